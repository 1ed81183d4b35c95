import pytest
from django.urls import reverse

from oversight.banks.importers import import_custom

pytestmark = pytest.mark.django_db

JSONL = (
    '{"id": "j1", "question": "Pick B", "options": ["a", "b"], "answer": "B", "split": "main"}\n'
    '{"id": "j2", "question": "Read", "options": ["x", "y"], "passage": {"id": "p1", "title": "T", "text": "Text."}}\n'
)


@pytest.fixture
def bank(write):
    return import_custom(path=write("bank.jsonl", JSONL), bank_name="Pilot").bank


@pytest.mark.parametrize("model", ["bank", "passage", "item"])
def test_the_admin_lists_and_searches_each_model(admin_client, bank, model):
    url = reverse(f"admin:banks_{model}_changelist")

    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "p"}).status_code == 200


def test_the_bank_list_counts_items_and_passages(admin_client, bank):
    response = admin_client.get(reverse("admin:banks_bank_changelist"))

    assert [(b.item_count, b.passage_count) for b in response.context["cl"].result_list] == [(2, 1)]


def test_an_item_page_opens(admin_client, bank):
    item = bank.items.get(external_id="j2")

    response = admin_client.get(reverse("admin:banks_item_change", args=[item.pk]))

    assert response.status_code == 200
    assert b"j2" in response.content


def test_outsiders_cannot_see_the_bank_admin(client, alice):
    client.force_login(alice)

    response = client.get(reverse("admin:banks_item_changelist"))

    assert response.status_code == 302
