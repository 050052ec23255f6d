"""The sentence bank of the generated corpus, written for this project.

NEUTRAL sentences carry no emotion in their words and are shared by every class; EMOTIONAL[c] carry the
lexical emotion of class c. The generator picks an emotional sentence with probability
EMOTIONAL_SHARE (0.4) and a neutral one otherwise, so the transcript helps a text model on part of the
data but never decides the class alone. PHRASES are short (1-2 s) pieces for the `localized` variant,
with the same split between emotional and neutral wording.
"""

from __future__ import annotations

EMOTIONAL_SHARE = 0.4

NEUTRAL = (
    "The meeting was moved to Thursday afternoon at three.",
    "Please put the blue folder on the second shelf.",
    "The train leaves the station every twenty minutes.",
    "We need two more chairs for the back of the room.",
    "The report has four sections and a short appendix.",
    "She parked the car near the entrance of the building.",
    "The library closes at eight on weekdays.",
    "He wrote the numbers down in a small notebook.",
    "The package should arrive sometime next week.",
    "There are three windows on the north side of the house.",
    "I will send you the address later today.",
    "The bus stop is across the street from the bakery.",
    "They painted the fence during the summer.",
    "The printer on the third floor uses a different cable.",
    "My brother moved to a new apartment in March.",
    "The recipe calls for two cups of flour.",
    "We walked along the river until we reached the bridge.",
    "The store opens at nine in the morning.",
    "You can find the forms on the table by the door.",
    "The lecture covered the history of the old harbour.",
    "Turn left at the corner and keep going straight.",
    "The phone was charging on the kitchen counter.",
    "Our flight lands a little after midnight.",
    "The new schedule starts on the first of the month.",
)

EMOTIONAL = {
    "N": (
        "I checked the list and everything looks ordinary.",
        "It is a regular day with nothing special planned.",
        "The results were about what we expected.",
        "I have no strong opinion about it either way.",
        "That is fine, we can do it the usual way.",
        "Nothing much happened at work today.",
    ),
    "H": (
        "I am so happy that you could come tonight!",
        "This is the best news I have heard all year!",
        "We won the prize and I feel wonderful!",
        "What a lovely surprise, thank you so much!",
        "I love this song, it makes me smile every time!",
        "Everything worked out perfectly, I am delighted!",
    ),
    "A": (
        "I am furious that you lied to me again!",
        "Stop interrupting me, this is outrageous!",
        "How dare you take my things without asking!",
        "I am sick and tired of your excuses!",
        "Get out of my office right now!",
        "This is the third time you broke your promise, I am so angry!",
    ),
    "S": (
        "I miss her so much since she passed away.",
        "Nobody came to the party, and I feel so alone.",
        "I lost my job today and I do not know what to do.",
        "It breaks my heart to say goodbye to this place.",
        "We tried so hard, and still it was not enough.",
        "I feel empty and tired of everything.",
    ),
    "C": (
        "Oh please, as if you could ever do better.",
        "That is a pathetic excuse for an answer.",
        "I expected nothing from you, and you delivered exactly that.",
        "How typical of you to take the credit.",
        "Your little plan was never going to impress anyone.",
        "Spare me the lecture, you know nothing about it.",
    ),
    "U": (
        "Wait, you are getting married next week?",
        "I cannot believe it, is that really you?",
        "Wow, I never expected to see this here!",
        "No way, the whole team is coming to visit?",
        "What, the house sold in just one day?",
        "Really? They moved the concert to tonight?",
    ),
    "D": (
        "That smell is absolutely revolting.",
        "There is mould all over the bread, it is disgusting.",
        "I cannot stand the sight of that greasy mess.",
        "Yuck, someone left rotten food in the fridge again.",
        "The way he treats people makes me feel sick.",
        "That water is filthy, do not touch it.",
    ),
    "F": (
        "Someone is trying to open the door, I am scared.",
        "Please do not leave me alone in the dark.",
        "I think we are lost and the storm is getting worse.",
        "Did you hear that noise? I am terrified.",
        "The brakes are not working, we are going to crash!",
        "I am afraid something terrible has happened to them.",
    ),
}

NEUTRAL_PHRASES = (
    "on the second shelf of the cupboard",
    "a little after noon on Tuesday",
    "written in the small grey notebook",
    "somewhere near the front door",
    "together with the blue folder",
    "right after the long meeting",
    "just by the kitchen window",
    "at the far end of the street",
    "for the rest of the week",
    "next to the old office printer",
)

EMOTIONAL_PHRASES = {
    "N": ("just as we planned it", "in the usual way again", "nothing special about that"),
    "H": ("oh, this is so wonderful!", "I really love it so much!", "what a joy this is!"),
    "A": ("this is absolutely outrageous!", "how dare you do this!", "I am so furious with you!"),
    "S": ("I miss her so much now", "it all feels so hopeless", "I feel so terribly alone"),
    "C": ("how pathetic that really is", "as if you ever could", "oh, spare me the speech"),
    "U": ("no way, is that really true?", "I just cannot believe it!", "wow, what on earth?"),
    "D": ("that is truly revolting stuff", "yuck, that is disgusting", "it really makes me sick"),
    "F": ("I am so very scared now", "please, somebody help me!", "I am terrified of this"),
}
