"""The book's vocabulary (app/rag/vocabulary.py): related forms searched beside a reader's own words."""

from app.rag.sparse import query_vector, token_index
from app.rag.vector_index import SearchHit
from app.rag.vocabulary import (
    BookVocabulary,
    acronyms_in,
    glosses_in,
    spelled_out_acronyms,
    without_pleasantries,
    word_family,
)

BOOK = [
    "Remapping a topic name in a launch file.",
    "سمولیشن میں روبوٹ کی ٹانگیں اور ٹانگ کا جوڑ",
    "گھروں میں سیڑھیاں ہوتی ہیں",
    "نوڈز اور ٹاپکس کا جال **ROS 2 گراف** (ROS graph) کہلاتا ہے۔",
    "URDF: the Unified Robot Description Format. A ROS robot is a tree of links.",
    "Optimus (Gen 2) by Tesla is electric. ROS nodes talk over topics.",
    "ROS launch files start many nodes.",
]


class BookIndex:
    generation = "g1"

    def search(self, request):
        return [SearchHit(id=str(i), score=1.0, payload={"text": text, "heading_path": []}) for i, text in enumerate(BOOK)]


def vocabulary() -> BookVocabulary:
    return BookVocabulary(BookIndex(), dimensions=4)


def test_a_misspelt_word_is_searched_with_the_book_spelling_one_edit_away():
    assert vocabulary().spelling_variants("how do I do remaping in a launch file") == ["remapping"]
    assert vocabulary().spelling_variants("سمیولیشن کیا ہے") == ["سمولیشن"]


def test_words_the_book_uses_and_short_words_get_no_variants():
    assert vocabulary().spelling_variants("topic remapping launch") == []
    assert vocabulary().spelling_variants("tpic") == []  # shorter than five letters: too many near words


def test_urdu_inflections_are_searched_as_the_book_writes_them():
    assert word_family("ٹانگوں") == word_family("ٹانگیں") == "ٹانگ"
    assert set(vocabulary().inflections("ٹانگوں والا روبوٹ")) == {"ٹانگیں", "ٹانگ"}
    assert vocabulary().inflections("گھر کیسا ہے") == ["گھروں"]
    assert word_family("topics") == "topics"  # English words keep the tokenizer's own light stemming


def test_related_forms_weigh_less_than_the_question_own_words():
    vector = query_vector("ٹانگوں", related=["ٹانگیں", "ٹانگوں"], related_weight=0.5)
    weights = dict(zip(vector.indices, vector.values, strict=True))
    assert weights == {token_index("ٹانگوں"): 1.0, token_index("ٹانگیں"): 0.5}


def test_the_urdu_text_glosses_english_terms_in_parentheses():
    assert glosses_in("ادراکی سائنس (cognitive science) اور مقررہ حد (deadline)") == {
        "cognitive science": ["ادراکی", "سائنس"], "deadline": ["مقررہ", "حد"]}


def test_an_urdu_question_using_the_english_term_is_searched_with_the_book_urdu_words_too():
    assert vocabulary().urdu_glosses("ROS graph کسے کہتے ہیں؟") == ["گراف"]
    assert vocabulary().urdu_glosses("What is the ROS graph?") == []  # an English question searches English text


def test_acronyms_are_mined_in_both_forms_the_book_writes_them():
    assert acronyms_in("a Vision-Language-Action (VLA) model") == {"vla": "Vision Language Action"}
    assert acronyms_in("URDF: the Unified Robot Description Format") == {"urdf": "Unified Robot Description Format"}
    assert acronyms_in("MPC: Model Predictive Control looks ahead") == {"mpc": "Model Predictive Control"}
    # A chunk's heading path, joined: the first colon's words must not hide the second's.
    assert acronyms_in("Describing Robots: URDF and SDF URDF: the Unified Robot Description Format") == {
        "urdf": "Unified Robot Description Format"}
    # A colon after a capitalised word that is not followed by its long form is not an acronym.
    assert acronyms_in("ZMP: the point where the moment is zero. Note: The Robot moves") == {}


def test_a_question_using_the_short_form_is_searched_with_the_long_form():
    assert vocabulary().expand("what does URDF stand for") == (
        "what does URDF stand for (Unified Robot Description Format)")


def test_rare_names_are_the_question_names_the_book_uses_in_few_chunks():
    book = vocabulary()
    assert book.rare_names("tell me about Tesla Optimus", max_chunks=1) == ["tesla", "optimus"]
    assert book.rare_names("How does ROS launch Optimus?", max_chunks=1) == ["optimus"]  # ROS: in four chunks
    assert book.rare_names("How does ROS launch Optimus?", max_chunks=4) == ["ros", "optimus"]
    assert book.rare_names("What is Nav2?", max_chunks=5) == []  # a name the book never uses is not rare, it is unknown


def test_names_the_book_never_uses_are_capitalised_inside_a_sentence_not_at_its_start():
    book = vocabulary()
    assert book.unknown_names("How do ROS nodes talk to Gazebo?") == ["Gazebo"]
    assert book.unknown_names("I've read about ROS launch files. Do they start Gazebo?") == ["Gazebo"]
    # A sentence's first word and the pronoun's contractions are how readers write, not names.
    assert book.unknown_names("what is a ROS node? Please explain it like I'm new") == []
    assert book.unknown_names("Hello! Sorry, which nodes does a launch file start?") == []


def test_an_acronym_spelled_out_in_urdu_letters_is_searched_and_judged_as_the_latin_acronym():
    assert spelled_out_acronyms("یو آر ڈی ایف فائل میں کیا ہوتا ہے؟") == "URDF فائل میں کیا ہوتا ہے؟"
    assert spelled_out_acronyms("آئی ایم یو؟") == "IMU؟"
    # The genitive کے is also the letter K: it never starts or ends a run ("ROS's nodes", not "ROSK").
    assert spelled_out_acronyms("آر او ایس کے نوڈ کیا ہیں") == "ROS کے نوڈ کیا ہیں"
    # A single letter name, or none, leaves the question as the reader wrote it.
    for question in ("ROS 2  میں نوڈ کیا ہے", "کے آر", "what is an IMU?"):
        assert spelled_out_acronyms(question) == question
    assert vocabulary().unknown_names(spelled_out_acronyms("آر ایل ایچ ایف کیا ہے؟")) == ["RLHF"]


class UrduBookIndex(BookIndex):
    TEXTS = ["ہر launch فائل کئی نوڈز شروع کرتی ہے۔", "Python میں نوڈ لکھیں۔", "ایک leader اور LiDAR۔",
             "A lidar reading, and a leader arm."]

    def search(self, request):
        return [SearchHit(id=str(i), score=1.0, payload={"text": t, "heading_path": []}) for i, t in enumerate(self.TEXTS)]


def test_an_english_term_written_in_urdu_letters_is_searched_as_the_urdu_text_writes_it():
    book = BookVocabulary(UrduBookIndex(), dimensions=4)
    assert book.transliterations("لانچ فائل کیسے لکھیں؟") == {"لانچ": ["launch"]}
    assert book.transliterations("پیتھون میں نوڈ") == {"پیتھون": ["python"]}
    # Two of the Urdu text's English terms sound alike (lidar, leader): no guess.
    assert book.transliterations("لائیڈار کیا ہے؟") == {}
    # Words the book uses, and short ones, are left alone; English questions have none.
    assert book.transliterations("نوڈز شروع کیسے ہوتے ہیں") == {}
    assert book.transliterations("how do I write a launch file") == {}


def test_urdu_words_the_book_knows_in_no_form_are_told_apart_from_its_words_misspellings_and_loanwords():
    book = BookVocabulary(UrduBookIndex(), dimensions=4)
    for question, unknown in (("اینڈرائیڈ ایپ سے launch فائل", ["اینڈرائیڈ", "ایپ"]),
                              ("لانچ فائل میں نوڈز", []),  # a loanword of the Urdu text's launch
                              ("how do I start nodes", [])):
        assert book.unknown_urdu_words(question, book.transliterations(question)) == unknown


def test_a_sentence_of_greeting_or_thanks_is_not_searched():
    assert without_pleasantries("Hi! I'm new to ROS. What is a node?") == "I'm new to ROS. What is a node?"
    assert without_pleasantries("What is ZMP? Thank you!") == "What is ZMP?"
    assert without_pleasantries("السلام علیکم! نوڈ کیا ہے؟") == "نوڈ کیا ہے؟"
    # Inside a sentence, or when nothing else is left, the reader's words stay.
    for question in ("Hello, what is a node?", "Please explain ZMP.", "thanks", "What is a node"):
        assert without_pleasantries(question) == question
