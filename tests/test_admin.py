import pytest

from tests.factories import make_study

pytestmark = pytest.mark.django_db


def test_a_staff_researcher_can_read_but_not_change_raw_data_in_the_admin(client, alice):
    alice.is_staff = True
    alice.save()
    study = make_study(owner=alice)
    client.force_login(alice)
    assert client.get("/admin/core/study/").status_code == 200
    page = client.get(f"/admin/core/study/{study.pk}/change/")
    assert page.status_code == 200 and b'name="title"' not in page.content
    assert client.post(f"/admin/core/study/{study.pk}/change/", {"title": "hacked"}).status_code == 403
    assert client.get("/admin/core/study/add/").status_code == 403


def test_a_superuser_can_change_raw_data(client, django_user_model):
    root = django_user_model.objects.create_superuser("root", "root@example.org", "root-password-1")
    study = make_study(owner=root)
    client.force_login(root)
    assert b'name="title"' in client.get(f"/admin/core/study/{study.pk}/change/").content


@pytest.mark.parametrize(
    "app,model",
    [("banks", "bank"), ("banks", "item"), ("assistant", "chatmessage"), ("core", "job"), ("judges", "judgerun")],
)
def test_every_app_s_admin_is_read_only_for_staff_and_writable_for_superusers(
    client, alice, django_user_model, app, model
):
    alice.is_staff = True
    alice.save()
    client.force_login(alice)
    assert client.get(f"/admin/{app}/{model}/").status_code == 200
    assert client.get(f"/admin/{app}/{model}/add/").status_code == 403

    root = django_user_model.objects.create_superuser("root", "root@example.org", "root-password-1")
    client.force_login(root)
    assert client.get(f"/admin/{app}/{model}/add/").status_code == 200


def test_no_one_reads_an_endpoint_s_token_in_the_admin(client, alice, django_user_model):
    from oversight.core.models import ModelEndpoint

    endpoint = ModelEndpoint.objects.create(name="gpu", kind="tgi", base_url="http://gpu.lab", token="s3cret-token")
    alice.is_staff = True
    alice.save()
    root = django_user_model.objects.create_superuser("root", "root@example.org", "root-password-1")
    for user in (alice, root):
        client.force_login(user)
        page = client.get(f"/admin/core/modelendpoint/{endpoint.pk}/change/")
        assert page.status_code == 200 and b"gpu.lab" in page.content and b"s3cret-token" not in page.content


def test_the_study_log_is_append_only_even_for_a_superuser(client, django_user_model):
    from oversight.core.models import StudyLogEntry
    from oversight.core.services.study_log import study_log_add

    root = django_user_model.objects.create_superuser("root", "root@example.org", "root-password-1")
    entry = study_log_add(study=make_study(owner=root), action=StudyLogEntry.Action.DESIGN, by=root, summary="x")
    client.force_login(root)
    assert client.get("/admin/core/studylogentry/").status_code == 200
    assert client.get("/admin/core/studylogentry/add/").status_code == 403
    assert client.post(f"/admin/core/studylogentry/{entry.pk}/change/", {"summary": "y"}).status_code == 403
