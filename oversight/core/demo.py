"""What the demo is, so the home page and `make run` print the same links."""

DEMO_STUDY_SLUG = "demo"
DEMO_RESEARCHER = ("researcher", "oversight-demo")


def demo_links() -> dict:
    from oversight.core.models import Study

    study = Study.objects.filter(slug=DEMO_STUDY_SLUG).first()
    return {
        "study": study,
        "participant_path": f"/s/{DEMO_STUDY_SLUG}/?PROLIFIC_PID=demo-participant" if study else None,
        "researcher_username": DEMO_RESEARCHER[0],
        "researcher_password": DEMO_RESEARCHER[1],
    }
