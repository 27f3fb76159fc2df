"""The synthetic knowledge world: people, biographies, questions, updates, streams."""

from reverie.world.generator import QA, Person, SkillStream, World, WorldConfig
from reverie.world.templates import ATTRIBUTES

__all__ = ["ATTRIBUTES", "QA", "Person", "SkillStream", "World", "WorldConfig"]
