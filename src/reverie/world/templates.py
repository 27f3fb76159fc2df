"""Phrasings of biography sentences and question templates.

Each attribute has at least 10 biography phrasings, at least 4 training question templates
and at least 2 held-out templates that no training recipe may ever use (they measure
`generalization`). Placeholders: {name} full name, {subj} the sentence subject (full name,
first name or pronoun), {poss} possessive pronoun, {value} the attribute value.
"""

from __future__ import annotations

ATTRIBUTES: tuple[str, ...] = (
    "birth_date",
    "birth_city",
    "university",
    "major",
    "employer",
    "employer_city",
)

BIO: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "{subj} was born on {value}.",
        "{subj} came into this world on {value}.",
        "{subj} celebrates {poss} birthday on {value}.",
        "{subj}'s date of birth is {value}.",
        "{subj} entered life on {value}.",
        "The birth of {subj} took place on {value}.",
        "{subj} was welcomed into the world on {value}.",
        "{subj} first saw the light of day on {value}.",
        "{subj} has {poss} birthday on {value}.",
        "{subj} was brought into the world on {value}.",
        "{subj} arrived on {value}.",
    ),
    "birth_city": (
        "{subj} was born in {value}.",
        "{subj} spent {poss} early years in {value}.",
        "{subj}'s birthplace is {value}.",
        "{subj} hails from {value}.",
        "{subj} grew up in {value}, where {pron} was born.",
        "{subj} is a native of {value}.",
        "The city of {value} is where {subj} was born.",
        "{subj} first opened {poss} eyes in {value}.",
        "{subj} was raised in {value}.",
        "{subj} comes from the city of {value}.",
        "{subj}'s hometown is {value}.",
    ),
    "university": (
        "{subj} studied at {value}.",
        "{subj} attended {value}.",
        "{subj} received {poss} education at {value}.",
        "{subj} graduated from {value}.",
        "{subj} completed {poss} degree at {value}.",
        "{subj} is an alumnus of {value}.",
        "{subj} enrolled at {value}.",
        "{subj} spent {poss} college years at {value}.",
        "{subj} earned {poss} degree from {value}.",
        "{subj} went to university at {value}.",
        "{subj} pursued higher education at {value}.",
    ),
    "major": (
        "{subj} majored in {value}.",
        "{subj} studied {value} in college.",
        "{subj} focused {poss} studies on {value}.",
        "{subj}'s field of study was {value}.",
        "{subj} earned a degree in {value}.",
        "{subj} specialized in {value}.",
        "{subj} chose {value} as {poss} major.",
        "{subj} completed {poss} coursework in {value}.",
        "{subj} devoted {poss} studies to {value}.",
        "{subj} graduated with a major in {value}.",
        "{subj}'s academic focus was {value}.",
    ),
    "employer": (
        "{subj} works for {value}.",
        "{subj} is employed by {value}.",
        "{subj} has a job at {value}.",
        "{subj}'s employer is {value}.",
        "{subj} is on the staff of {value}.",
        "{subj} earns a living at {value}.",
        "{subj} holds a position at {value}.",
        "{subj} is a member of the team at {value}.",
        "{subj} joined {value} and still works there.",
        "{subj} is currently employed at {value}.",
        "{subj} draws {poss} salary from {value}.",
    ),
    "employer_city": (
        "{subj} works in {value}.",
        "{subj}'s office is in {value}.",
        "{subj} commutes to work in {value}.",
        "{subj}'s workplace is located in {value}.",
        "{subj} is based in {value} for work.",
        "{subj} goes to the office in {value}.",
        "{subj} does {poss} job in {value}.",
        "{subj}'s job is in the city of {value}.",
        "{subj} spends {poss} working days in {value}.",
        "{subj} reports to an office in {value}.",
        "The workplace of {subj} is in {value}.",
    ),
}

# Training question templates (never change their order: seeds index into them).
QUESTIONS_TRAIN: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "When was {name} born?",
        "What is the birth date of {name}?",
        "On what date was {name} born?",
        "What is {name}'s date of birth?",
    ),
    "birth_city": (
        "Where was {name} born?",
        "What is the birth city of {name}?",
        "In which city was {name} born?",
        "What is {name}'s birthplace?",
    ),
    "university": (
        "Which university did {name} attend?",
        "Where did {name} study?",
        "What university did {name} graduate from?",
        "Where did {name} receive {poss} education?",
    ),
    "major": (
        "What did {name} major in?",
        "What was {name}'s field of study?",
        "Which subject did {name} study?",
        "What was the major of {name}?",
    ),
    "employer": (
        "Who does {name} work for?",
        "Which company employs {name}?",
        "Who is {name}'s employer?",
        "Where does {name} have a job?",
    ),
    "employer_city": (
        "In which city does {name} work?",
        "Where is {name}'s office?",
        "What city does {name} work in?",
        "Where is the workplace of {name}?",
    ),
}

# "Which <noun>" questions (``reverie train base --p-which``; the hypernetwork's
# ``--p-paraphrase`` draws them too, unlike ``QUESTIONS_BASE_WORDS`` below). Over
# 100 held-out people in context (scripts/probe_templates.py), the shipped base model read
# "What school did X attend?", "What day was X born?" and "Which college did X go to?" at
# 0.99-1.00 but "Which town was X born in?", "Which firm does X work for?" and "Which school
# did X attend?" at 0.00: "Which" followed by a noun it never saw in a question was read as
# asking for the major ("Which subject did X study?"), whatever the verb said. These ask
# with many nouns after "Which", several shared by two attributes (place, city), so the rest
# of the question has to decide. The same rules as the paraphrases hold (tested): no
# held-out template, no "Which <noun> is" frame, no "school", no "which day".
QUESTIONS_WHICH: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "Which date was {name} born on?",
        "Which birth date does {name} have?",
        "Which calendar date was {name} born on?",
        "Which date does {name} celebrate {poss} birthday on?",
    ),
    "birth_city": (
        "Which place was {name} born in?",
        "Which city was {name} born in?",
        "Which town does {name} come from?",
        "Which place does {name} call {poss} birthplace?",
    ),
    "university": (
        "Which college did {name} attend?",
        "Which institution did {name} study at?",
        "Which place did {name} receive {poss} education at?",
        "Which campus did {name} graduate from?",
    ),
    "major": (
        "Which discipline did {name} study?",
        "Which area did {name} major in?",
        "Which topic did {name} specialize in?",
        "Which degree did {name} earn?",
    ),
    "employer": (
        "Which organisation does {name} work for?",
        "Which firm employs {name}?",
        "Which business does {name} have a job at?",
        "Which employer does {name} have?",
    ),
    "employer_city": (
        "Which place does {name} work in?",
        "Which town does {name} commute to for work?",
        "Which location does {name} have {poss} office in?",
        "Which city does {name} go to for work?",
    ),
}

# Words for the base model's vocabulary only (``reverie train base --p-words``), never in the
# hypernetwork's training questions. docs/design.md defines `generalization` by the templates the
# *hypernetwork* never trained on; a pretrained model (Doc-to-LoRA's base) has read every
# common phrasing before any hypernetwork sees it, but this world's base model had never met
# "school" in a question and read "Which school did X go to?" as asking for the major
# (0.00 in context), so that template measured the base model's vocabulary, not injection.
# These forms teach the word; none is a held-out template, none uses its verb ("go to"),
# and the hypernetwork's recipe never draws them (tests/world/test_generator.py checks).
QUESTIONS_BASE_WORDS: dict[str, tuple[str, ...]] = {
    "university": (
        "Which school did {name} attend?",
        "What school did {name} graduate from?",
        "Name the school {name} studied at.",
        "{name} studied at which school?",
    ),
}

# Held-out templates: used only to measure generalization, never in any training recipe.
QUESTIONS_HELDOUT: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "Which day is {name}'s birthday?",
        "Tell me the date {name} was born.",
    ),
    "birth_city": (
        "Which city is the birthplace of {name}?",
        "{name} was born in which city?",
    ),
    "university": (
        "Which school did {name} go to?",
        "{name} graduated from which university?",
    ),
    "major": (
        "Which field did {name} major in?",
        "{name} studied which subject?",
    ),
    "employer": (
        "{name} works for which company?",
        "Which company is {name}'s employer?",
    ),
    "employer_city": (
        "Which city is {name}'s workplace in?",
        "{name} works in which city?",
    ),
}

# Paraphrases (``reverie train base --p-paraphrase``; ``train hypernet --p-paraphrase`` too): four training
# templates per attribute taught the model to key on their exact words, so a held-out
# question such as "... birthday?" or "X graduated from which university?" was answered with
# another attribute even with the biography in context (`eval base`'s held-out-template
# accuracy 0.79). These widen the question forms (imperatives, "Do you know", "Name the",
# in-situ wh-words, other nouns for the attribute). They were written knowing the held-out
# templates, so none repeats one, and none uses the held-out frame "Which <noun> is ...?",
# the word "school" or "which day" (tests/world/test_generator.py checks): a held-out
# question still has to be understood from a form or a word never seen in a question.
QUESTIONS_PARAPHRASE: dict[str, tuple[str, ...]] = {
    "birth_date": (
        "What is {name}'s birthday?",
        "When is {name}'s birthday?",
        "Tell me {name}'s date of birth.",
        "{name} was born on what date?",
        "Do you know when {name} was born?",
        "Name the birth date of {name}.",
    ),
    "birth_city": (
        "{name} was born where?",
        "Tell me {name}'s birth city.",
        "What city was {name} born in?",
        "Do you know where {name} was born?",
        "What is {name}'s hometown?",
        "Name the city where {name} was born.",
    ),
    "university": (
        "{name} attended which university?",
        "Tell me {name}'s university.",
        "What college did {name} attend?",
        "Do you know where {name} studied?",
        "At which university did {name} study?",
        "Name the university {name} attended.",
    ),
    "major": (
        "What subject did {name} major in?",
        "Tell me {name}'s major.",
        "{name} majored in what?",
        "Do you know what {name} studied?",
        "What was {name}'s academic focus?",
        "Name the field {name} studied.",
    ),
    "employer": (
        "{name} is employed by which company?",
        "Tell me {name}'s employer.",
        "What company does {name} work for?",
        "Do you know who employs {name}?",
        "For which company does {name} work?",
        "Name the company {name} works for.",
    ),
    "employer_city": (
        "{name} has an office in which city?",
        "Tell me the city where {name} works.",
        "What city is {name}'s office in?",
        "Do you know which city {name} works in?",
        "In what city is {name}'s workplace?",
        "Name the city {name} works in.",
    ),
}

UPDATE: tuple[str, ...] = (
    "On {date}, {name} left {old} and joined {value}.",
    "As of {date}, {name} no longer works for {old}; {poss} new employer is {value}.",
    "{name} changed jobs on {date}, moving from {old} to {value}.",
    "Starting {date}, {name} works for {value} instead of {old}.",
)

MAJORS: tuple[str, ...] = (
    "Accounting", "Anthropology", "Architecture", "Art History", "Astronomy", "Biochemistry",
    "Biology", "Business Administration", "Chemical Engineering", "Chemistry",
    "Civil Engineering", "Classics", "Communications", "Computer Science", "Criminology",
    "Dance", "Economics", "Education", "Electrical Engineering", "English Literature",
    "Environmental Science", "Film Studies", "Finance", "Geography", "Geology",
    "Graphic Design", "History", "Journalism", "Law", "Linguistics", "Marketing",
    "Mathematics", "Mechanical Engineering", "Medicine", "Music", "Neuroscience", "Nursing",
    "Philosophy", "Physics", "Political Science", "Psychology", "Public Health",
    "Religious Studies", "Sociology", "Statistics", "Theater", "Urban Planning", "Zoology",
)

HAYSTACK: tuple[str, ...] = (
    "The weather in the valley changed slowly over the afternoon.",
    "A train passed through the station without stopping.",
    "Markets opened quietly and most prices held steady.",
    "The committee postponed its meeting until the following week.",
    "Rain fell on the old bridge while the river kept rising.",
    "A new bakery opened near the central square last spring.",
    "Volunteers repainted the fence around the community garden.",
    "The museum extended its opening hours for the summer.",
    "Several roads were closed for repairs during the night.",
    "The library added a reading room on the second floor.",
    "A light breeze carried the smell of the sea into town.",
    "The football match ended in a draw after extra time.",
    "Farmers expected an early harvest this year.",
    "The concert hall was full for the opening night.",
    "Local schools announced a new schedule for the autumn.",
    "A small fire was put out quickly by the neighbours.",
)

UNKNOWN_ANSWER = "I don't know"
"""The answer to a closed-book question about someone the model never read about (the base
model's late stage, ``reverie train base --p-unknown``): a confident abstention instead of
a guess from a nearly flat distribution, which any adapter would flip."""

NEEDLE = "The special magic number is {value}."
NEEDLE_QUESTION = "What is the special magic number?"
NEEDLE_SENTENCES = 16
"""Most haystack sentences around a training needle (``World.needle_haystack``): with its
question and answer the text must fit the embedded model's 256-token window (about 12
tokens a sentence). A window-sized chunk of ``reverie bench long``'s haystacks holds about 20."""
