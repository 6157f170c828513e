from app.rag.sparse import document_vector, query_vector, tokenize


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
