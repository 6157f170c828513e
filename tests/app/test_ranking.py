"""Fusing the dense and sparse candidates (app/rag/ranking.py)."""

from app.rag.ranking import FusionWeights, fuse
from app.rag.vector_index import SearchHit


def hits(*pairs: tuple[str, float]) -> list[SearchHit]:
    return [SearchHit(id=chunk_id, score=score, payload={}) for chunk_id, score in pairs]


def test_rank_fusion_alone_puts_the_chunk_both_lists_agree_on_first():
    weights = FusionWeights(dense=1.0, sparse=1.0, rrf_k=5, bm25=0.0, cosine=0.0)
    fused = fuse(hits(("a", 0.6), ("b", 0.5)), hits(("b", 9.0), ("c", 8.0)), weights, limit=10)
    assert [h.id for h in fused] == ["b", "a", "c"]
    assert fused[0].score == 1 / 7 + 1 / 6


def test_a_chunk_far_behind_the_best_bm25_score_drops_below_the_one_the_ranks_alone_put_second():
    dense = hits(("a", 0.50), ("b", 0.49))
    close = hits(("b", 10.0), ("a", 9.9))
    far = hits(("b", 10.0), ("a", 2.0))
    ranks_only = FusionWeights(dense=1.0, sparse=0.5, rrf_k=5, bm25=0.0, cosine=0.0)
    with_bm25 = FusionWeights(dense=1.0, sparse=0.5, rrf_k=5, bm25=0.1, cosine=0.0)
    assert fuse(dense, far, ranks_only, limit=2)[0].id == "a"  # ranks alone cannot see how far behind a is
    assert fuse(dense, far, with_bm25, limit=2)[0].id == "b"
    assert fuse(dense, close, with_bm25, limit=2)[0].id == "a"  # close behind: the ranks still decide


def test_cosine_counts_only_with_its_weight():
    dense = hits(("a", 0.9), ("b", 0.1))
    sparse = hits(("b", 5.0), ("a", 4.0))
    unreliable = FusionWeights(dense=0.0, sparse=1.0, rrf_k=5, bm25=0.0, cosine=0.0)
    reliable = FusionWeights(dense=0.0, sparse=1.0, rrf_k=5, bm25=0.0, cosine=0.5)
    assert [h.id for h in fuse(dense, sparse, unreliable, limit=2)] == ["b", "a"]
    assert [h.id for h in fuse(dense, sparse, reliable, limit=2)] == ["a", "b"]


def test_the_limit_and_an_empty_sparse_list():
    fused = fuse(hits(("a", 0.9), ("b", 0.8), ("c", 0.7)), [], FusionWeights(), limit=2)
    assert [h.id for h in fused] == ["a", "b"]
