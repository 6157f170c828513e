"""The book's vocabulary (app/rag/vocabulary.py): related forms searched beside a reader's own words."""

from app.rag.sparse import query_vector, token_index
from app.rag.vector_index import SearchHit
from app.rag.vocabulary import BookVocabulary, glosses_in, word_family

BOOK = [
    "Remapping a topic name in a launch file.",
    "سمولیشن میں روبوٹ کی ٹانگیں اور ٹانگ کا جوڑ",
    "گھروں میں سیڑھیاں ہوتی ہیں",
    "نوڈز اور ٹاپکس کا جال **ROS 2 گراف** (ROS graph) کہلاتا ہے۔",
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
