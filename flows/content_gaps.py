"""content-gaps: what readers asked this week that the book does not answer, as work for its authors.

When it runs: weekly, Mondays at 07:00 UTC (prefect.yaml), over the seven days before; or on demand for any week.
What it does, in order: read the week's chat requests (status, locale, question, last rating) and the sources
their answers cited -> take the questions answered "not covered" and those rated thumbs-down -> embed them with
the service's model, add their words weighted by rarity in the week, and cluster them into topics
(average linkage, SciPy; CONTENT_GAP_MAX_DISTANCE, CONTENT_GAP_MIN_QUESTIONS) -> for each topic ask the service's search
for the nearest existing section ->
publish the `content-gaps` artifact (topics with count, locales, three examples and the nearest section; answer
rate, feedback ratio, top cited sections and busiest chapters by locale) -> push `content_gap_topics` and
`answer_rate` (by locale) to the Pushgateway when configured -> post the summary to CONTENT_GAPS_WEBHOOK_URL when set.

When it fails: the database or the service's search was unreachable (retried); run it again for the same week,
it writes nothing but the artifact and the metrics. Question text older than QUERY_TEXT_RETENTION_DAYS is gone,
so a week older than that has no topics. runbooks/readers-data.md.
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime, time, timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from app.ops.content_gaps import Topic, TrafficSummary, cluster_topics, gap_questions, summarize_traffic
from app.settings import get_settings
from flows.cli import flow_parser, run_cli
from flows.parameters import HttpUrl, IsoDateText
from tasks.content_gaps import embed_questions, find_nearest_section, read_week_citations, read_week_requests
from tasks.notify import push_metrics, send_notification


@flow(name="content-gaps", log_prints=True)
def content_gaps(week_ending: IsoDateText | None = None, service_url: HttpUrl | None = None) -> dict:
    """The seven days before `week_ending` (YYYY-MM-DD, default today UTC); `service_url` defaults to
    PROBE_BASE_URL (the service whose search names the nearest sections)."""
    logger = get_run_logger()
    settings = get_settings()
    end_day = date.fromisoformat(week_ending) if week_ending else datetime.now(UTC).date()
    end = datetime.combine(end_day, time.min, tzinfo=UTC)
    start = end - timedelta(days=7)

    requests = read_week_requests(settings, start, end)
    citations = read_week_citations(settings, start, end)
    gaps = gap_questions(requests)
    vectors = embed_questions(settings, [g.text for g in gaps])
    background = [r["question"] for r in requests if r["question"]]
    topics, unclustered = cluster_topics(gaps, vectors, background, max_distance=settings.content_gap_max_distance,
                                         min_questions=settings.content_gap_min_questions)
    for topic in topics:
        locale = next(iter(topic.locales))
        topic.nearest_section = find_nearest_section(settings, service_url or settings.resolved_probe_base_url,
                                                     topic.representative, locale)
    traffic = summarize_traffic(requests, citations)
    markdown = content_gaps_markdown(start, end, topics, unclustered, len(gaps), traffic)
    publish_content_gaps(markdown)

    push_metrics(settings, "content_gaps", {"content_gap_topics": float(len(topics))})
    for row in [traffic.overall, *traffic.by_locale]:
        if row.answer_rate is not None:
            push_metrics(settings, "content_gaps", {"answer_rate": row.answer_rate}, grouping_key={"locale": row.locale})
    if settings.content_gaps_webhook_url:
        send_notification(settings.content_gaps_webhook_url, f"textbook content gaps, week to {end_day.isoformat()}",
                          webhook_summary(topics, traffic))
    logger.info("week to %s: %d gap questions in %d topics (%d in none)", end_day, len(gaps), len(topics), unclustered)
    return {
        "week_start": start.date().isoformat(), "week_end": end_day.isoformat(), "gap_questions": len(gaps),
        "unclustered": unclustered, "answer_rate": traffic.overall.answer_rate,
        "topics": [{"count": t.count, "locales": t.locales, "reasons": t.reasons, "examples": t.examples,
                    "nearest_section": t.nearest_section} for t in topics],
    }


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def content_gaps_markdown(start: datetime, end: datetime, topics: list[Topic], unclustered: int, gaps: int,
                          traffic: TrafficSummary) -> str:
    lines = [f"# What the book did not answer: {start.date().isoformat()} to {(end - timedelta(days=1)).date()}", "",
             f"{gaps} questions answered \"not covered\" or rated thumbs-down; {len(topics)} topics, {unclustered} "
             "questions in no topic.", ""]
    for n, topic in enumerate(topics, 1):
        locales = ", ".join(f"{locale} {count}" for locale, count in topic.locales.items())
        reasons = ", ".join(f"{reason} {count}" for reason, count in topic.reasons.items())
        nearest = topic.nearest_section
        where = (f"[{nearest['title']} › {nearest['heading']}]({nearest['url']}) (score {nearest['score']:.3f})"
                 if nearest else "none found")
        lines += [f"## {n}. {topic.representative} ({topic.count} questions)", "",
                  f"Locales: {locales}. Why: {reasons}. Nearest existing section: {where}.", ""]
        lines += [f"- {example}" for example in topic.examples] + [""]
    lines += ["## Traffic by locale", "", "| locale | chat requests | answer rate | thumbs up | thumbs down | feedback ratio |",
              "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.locale} | {r.requests} | {percent(r.answer_rate)} | {r.thumbs_up} | {r.thumbs_down} | "
              f"{percent(r.feedback_ratio)} |" for r in [*traffic.by_locale, traffic.overall]]
    lines += ["", "## Most cited sections", "", "| section | citations |", "|---|---:|"]
    lines += [f"| {section} | {count} |" for section, count in traffic.top_sections] or ["| - | 0 |"]
    lines += ["", "## Busiest chapters", "", "| locale | chapter | answers citing it |", "|---|---|---:|"]
    lines += [f"| {locale} | {chapter} | {count} |" for locale, chapter, count in traffic.busiest_chapters] or ["| - | - | 0 |"]
    return "\n".join(lines)


@task(name="publish-content-gaps", cache_policy=NO_CACHE)
def publish_content_gaps(markdown: str) -> None:
    create_markdown_artifact(key="content-gaps", markdown=markdown, description="the week's content gaps for authors")


def webhook_summary(topics: list[Topic], traffic: TrafficSummary) -> str:
    head = f"answer rate {percent(traffic.overall.answer_rate)}, {len(topics)} topics the book does not answer"
    return "; ".join([head] + [f"{t.representative} ({t.count})" for t in topics[:5]])


def main(argv: list[str] | None = None) -> int:
    parser = flow_parser("flows.content_gaps", __doc__)
    parser.add_argument("--week-ending", help="YYYY-MM-DD: the report covers the seven days before it (default today)")
    parser.add_argument("--service-url", help="the service whose search names the nearest sections")
    args = parser.parse_args(argv)
    result = content_gaps(week_ending=args.week_ending, service_url=args.service_url)
    print(f"{result['week_start']} to {result['week_end']}: {result['gap_questions']} gap questions, "
          f"{len(result['topics'])} topics, answer rate {percent(result['answer_rate'])}")
    for topic in result["topics"]:
        print(f"  {topic['count']:4d}  {topic['examples'][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
