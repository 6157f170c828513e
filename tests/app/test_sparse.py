import pytest

from app.rag.sparse import document_vector, query_vector, token_index, tokenize


def test_code_tokens_survive():
    tokens = tokenize("Use `Vec<T>` with &mut borrows; File::open(path)? returns early.")
    assert {"vec<t>", "vec", "&mut", "mut", "file::open", "?"} <= set(tokens)


def test_question_mark_ending_a_sentence_is_not_the_operator():
    assert "?" not in tokenize("What is a publisher?")
    assert "?" in tokenize("What does the ? operator do?")


def test_english_stop_words_and_plurals():
    assert tokenize("The publishers of the nodes") == ["publisher", "node"]


def test_urdu_is_tokenised_with_diacritics_and_letter_variants_folded():
    plain = tokenize("روبوٹ کی حرکت")
    with_diacritics = tokenize("رُوبوٹ کی حَرکت")
    arabic_letters = tokenize("روبوٹ كی حركت")  # Arabic kaf instead of Urdu keheh
    assert plain == with_diacritics == arabic_letters == ["روبوٹ", "حرکت"]


def test_document_vectors_saturate_term_frequency_and_queries_are_binary():
    once = document_vector("kalman filter")
    many = document_vector("kalman " * 20 + "filter")
    assert max(many.values) < 2.3 * max(once.values)
    query = query_vector("kalman kalman filter")
    assert query.values == [1.0, 1.0] and query.indices == sorted(query.indices)


@pytest.mark.parametrize(
    ("typed", "book"),
    [
        ("كيمره", "کیمرہ"),  # Arabic kaf, yeh and heh, as an Arabic keyboard types them
        ("ٹوئن\u200cفائل", "ٹوئنفائل"),  # a zero-width non-joiner inside a word
        ("سِمُولیشن", "سمولیشن"),  # zer and pesh
        ("ۀ", "ہ"),
        ("۳۰ ہرٹز", "30 ہرٹز"),  # Urdu digits
        ("٣٠ ہرٹز", "30 ہرٹز"),  # Arabic-Indic digits
    ],
)
def test_urdu_letter_variants_digits_and_joiners_are_read_as_the_book_writes_them(typed, book):
    assert tokenize(typed) == tokenize(book) and tokenize(book)


def test_heh_doachashmee_is_not_folded_into_heh_goal():
    assert tokenize("پھل") != tokenize("پہل")


def test_latin_terms_inside_an_urdu_question_are_matched_like_english_ones():
    question = query_vector("URDF فائل میں IMU کیسے لگائیں؟")
    document = document_vector("The URDF file declares the IMU sensor.")
    assert {token_index("urdf"), token_index("imu")} <= set(question.indices) & set(document.indices)
