"""What the demo is, so the home page and `make run` print the same links."""

DEMO_STUDY_SLUG = "demo"
DEBATE_DEMO_SLUG = "demo-debate"  # core.demo_protocols: consultancy and debate judged without the story
DEMO_RESEARCHER = ("researcher", "oversight-demo")
# The plain link enrols a new anonymous participant at each consent, so every visit is a fresh run of the demo.
DEMO_PATH = f"/s/{DEMO_STUDY_SLUG}/"
# How Prolific sends its participants (the same PROLIFIC_PID resumes where it left off); the home page has a form
# that builds this link for any id.
DEMO_PROLIFIC_QUERY = "PROLIFIC_PID={id}&STUDY_ID=demo-study&SESSION_ID=demo-session"


def demo_links() -> dict:
    from oversight.core.models import Study

    studies = {s.slug: s for s in Study.objects.filter(slug__in=[DEMO_STUDY_SLUG, DEBATE_DEMO_SLUG])}
    study = studies.get(DEMO_STUDY_SLUG)
    return {
        "study": study,
        "participant_path": DEMO_PATH if study else None,
        "debate_path": f"/s/{DEBATE_DEMO_SLUG}/" if DEBATE_DEMO_SLUG in studies else None,
        "researcher_username": DEMO_RESEARCHER[0],
        "researcher_password": DEMO_RESEARCHER[1],
    }
