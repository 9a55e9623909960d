"""The template store and the shipped templates: both parts in both locales, MJML that
compiles, Jinja that survives compilation and renders with the documented context."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from campaigns.content import filters
from campaigns.content.sender import SENDER_FILE, load_senders
from campaigns.content.templates import (
    CompiledTemplate,
    TemplateError,
    TemplateNotFound,
    TemplateStore,
)
from campaigns.exceptions import CampaignsError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
JOURNEYS = ROOT / "journeys"
LOCALES = ["en", "ja"]

SHIPPED = {
    "csat_survey",
    "nps_survey",
    "nps_thanks",
    "onboarding_checkin",
    "onboarding_tips",
    "onboarding_welcome",
    "onboarding_welcome_video",
    "owner_task_digest",
    "owner_task_escalation",
    "owner_task_notification",
    "qbr_invite",
    "renewal_reminder",
    "renewal_reminder_admin",
    "renewal_reminder_executive",
    "usage_drop_nudge",
    "webinar_day_before",
    "webinar_followup",
    "webinar_invite",
    "webinar_invite_admin",
    "webinar_invite_executive",
    "webinar_reminder",
}
INTERNAL = {  # sent to the CSM (or their manager): no unsubscribe, no preferences
    "owner_task_digest",
    "owner_task_escalation",
    "owner_task_notification",
}

UNSUBSCRIBE = "https://t.example.com/u/tok?sig=a&n=1"
LINK_NAMES = ["app", "docs", "help", "renew", "review", "video", "webinar"]


def sample_context(**changes: Any) -> dict[str, Any]:
    """Every name docs/templates.md promises, with Japanese values where people type them."""
    context: dict[str, Any] = {
        "contact": {
            "name": "山田 太郎",
            "email": "taro@example.co.jp",
            "role": "admin",
            "locale": "ja",
            "time_zone": "Asia/Tokyo",
        },
        "account": {
            "name": "株式会社サンプル",
            "plan": "business",
            "arr": 3_000_000,
            "renewal_date": date(2027, 3, 31),
            "currency": "JPY",
            "days_to_renewal": 88,
            "external_id": "acc-1",
            "health_score": 35,
        },
        "owner": {"name": "佐藤 花子", "email": "hanako@example.com"},
        "journey": {"name": "Low-touch renewal"},
        "persona": "admin",
        "persona_label": "管理者",
        "subject": "件名のテスト",
        "preheader": "プレヘッダーのテスト",
        "unsubscribe_url": UNSUBSCRIBE,
        "preferences_url": "https://t.example.com/p/tok",
        "unsubscribe_mailto": "mailto:unsubscribe+tok@example.com?subject=unsubscribe",
        "sender": {
            **load_senders(ROOT / "templates" / SENDER_FILE).identity(None, "ja").context(),
            "unsubscribe_mailto": "mailto:unsubscribe+tok@example.com?subject=unsubscribe",
            "unsubscribe_address": "unsubscribe+tok@example.com",
        },
        "survey": {"scale": "nps", "question": None, "options": options("nps")},
        "invite": {
            "event_name": "第1四半期 製品ウェビナー",
            "starts_at": "2027年1月20日（水）16:00",
            "duration": "60分",
            "join_url": "https://t.example.com/c/join",
            "rsvp_yes_url": "https://t.example.com/r/yes",
            "rsvp_no_url": "https://t.example.com/r/no",
        },
        "links": {name: f"https://t.example.com/c/{name}" for name in LINK_NAMES},
        "task": {
            "title": "株式会社サンプルへ電話：NPS 3点",
            "kind": "call",
            "notes": "詳細をヒアリングする",
            "due": "2027年1月22日",
            "url": "https://cs.example.com/tasks/7",
            "account_url": "https://cs.example.com/accounts/1",
            "inbox_url": "https://cs.example.com/tasks",
            "priority": "urgent",
            "trigger": "health_red",
            "escalated_to": "manager@example.com",
            "escalated_on": "2027年1月23日（土）",
            "due_at": "2027年1月22日（金）18:00（日本時間）",
        },
        # Owner mail beyond the notice: escalations (to the manager) and daily digests.
        "manager": {"name": "高橋 部長", "email": "manager@example.com"},
        "overdue_for": "2日",
        "inbox_url": "https://cs.example.com/tasks",
        "day": "2027年1月23日（土）",
        "counts": {"new": 1, "overdue": 1, "total": 2},
        "groups": [
            {
                "account": "株式会社サンプル",
                "tasks": [
                    {
                        "title": "株式会社サンプルへ電話：NPS 3点",
                        "priority": "urgent",
                        "due": "2027年1月22日",
                        "overdue": True,
                        "new": False,
                        "escalated_to": "manager@example.com",
                        "escalated_on": "2027年1月23日（土）",
                    },
                    {
                        "title": "QBRの準備",
                        "priority": "normal",
                        "due": "2027年1月29日",
                        "overdue": False,
                        "new": True,
                        "escalated_to": None,
                        "escalated_on": "",
                    },
                ],
            }
        ],
    }
    context.update(changes)
    return context


def options(scale: str) -> list[dict[str, Any]]:
    values = range(11) if scale == "nps" else range(1, 6)
    return [
        {"value": v, "label": str(v), "url": f"https://t.example.com/a/{scale}/{v}"} for v in values
    ]


# The renderer's filters (date, money...), on strict environments: a name the documented
# context lacks fails the test.
HTML = filters.install(SandboxedEnvironment(autoescape=True, undefined=StrictUndefined))
TEXT = filters.install(SandboxedEnvironment(autoescape=False, undefined=StrictUndefined))


def render(compiled: CompiledTemplate, context: dict[str, Any]) -> tuple[str, str]:
    html = HTML.from_string(compiled.html).render(context)
    text = TEXT.from_string(compiled.text).render(context)
    return html, text


@pytest.fixture(scope="module")
def store() -> TemplateStore:
    return TemplateStore(TEMPLATES)


# -- the shipped templates -------------------------------------------------------------


def test_the_store_lists_every_shipped_template_and_no_partials(store: TemplateStore) -> None:
    assert set(store.names()) == SHIPPED
    assert not [n for n in store.names() if n.startswith("_")]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_template_has_both_parts_in_english_and_japanese(
    store: TemplateStore, name: str
) -> None:
    assert store.exists(name)
    assert store.locales(name) == LOCALES
    for locale in LOCALES:
        source = store.source(name, locale)
        assert source.locale == locale
        assert source.mjml.strip() and source.text.strip()


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_template_compiles_and_renders_with_the_documented_context(
    store: TemplateStore, name: str, locale: str
) -> None:
    compiled = store.compile(name, locale)
    assert (compiled.name, compiled.locale) == (name, locale)
    assert f'<html lang="{locale}"' in compiled.html

    html, text = render(compiled, sample_context())

    for part in (html, text):
        assert not re.search(r"\{\{|\{%|\{#", part), "a Jinja tag was left unrendered"
        assert "株式会社サンプル" in part  # Japanese context survives MJML and Jinja
    assert "<title>件名のテスト</title>" in html
    assert "プレヘッダーのテスト" in html
    if locale == "ja":
        # The template's own Japanese copy survives too, in both parts.
        assert re.search(r"[\u3040-\u30ff]{4,}", html) and re.search(r"[\u3040-\u30ff]{4,}", text)
    if name in INTERNAL:  # mail to our own staff: the task inbox, no unsubscribe, no preferences
        assert 'href="https://cs.example.com/tasks"' in html
        assert "https://cs.example.com/tasks" in text
        for part in (html, text):
            assert "https://t.example.com/p/tok" not in part and "/u/tok" not in part
    else:
        # Autoescaped in the attribute, verbatim in the text part.
        assert 'href="https://t.example.com/u/tok?sig=a&amp;n=1"' in html
        assert UNSUBSCRIBE in text
        assert 'href="https://t.example.com/p/tok"' in html
        assert "Example" in text  # the sender's postal address line from the footer


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_links_are_placeholders_never_literal_urls(
    store: TemplateStore, name: str, locale: str
) -> None:
    """The renderer rewrites links to signed tracking URLs: templates name them, nothing more."""
    compiled = store.compile(name, locale)
    hrefs = re.findall(r'href="([^"]*)"', compiled.html)
    assert hrefs
    assert all(re.fullmatch(r"(mailto:)?\{\{ [^}]+ \}\}", h) for h in hrefs), hrefs
    assert "http" not in compiled.html.split("<body", 1)[1]
    assert not re.search(r"https?://", compiled.text)


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_html_is_accessible_and_escapes_the_context(
    store: TemplateStore, name: str, locale: str
) -> None:
    compiled = store.compile(name, locale)
    changes: dict[str, Any] = {
        "contact": {"name": "<b>Eve</b>", "email": "e@x.jp", "role": None, "locale": locale}
    }
    if name == "owner_task_digest":  # names accounts, not contacts
        changes = {"groups": [{"account": "<b>Eve</b>", "tasks": []}]}
    html, _ = render(compiled, sample_context(**changes))
    assert "<b>Eve</b>" not in html and "&lt;b&gt;Eve&lt;/b&gt;" in html
    for img in re.findall(r"<img\b[^>]*>", html):
        assert re.search(r'alt="[^"]+"', img), img
    assert 'role="article"' in html and f'lang="{locale}"' in html


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize(
    ("name", "scale", "count"), [("nps_survey", "nps", 11), ("csat_survey", "csat", 5)]
)
def test_survey_renders_one_click_link_per_score(
    store: TemplateStore, name: str, scale: str, count: int, locale: str
) -> None:
    compiled = store.compile(name, locale)
    assert 'href="{{ option.url }}"' in compiled.html
    assert "{% for option in survey.options %}" in compiled.html
    survey = {"scale": scale, "question": None, "options": options(scale)}
    html, text = render(compiled, sample_context(survey=survey))
    found = re.findall(rf'href="(https://t\.example\.com/a/{scale}/\d+)"', html)
    assert found == [o["url"] for o in options(scale)]
    assert len(found) == count
    assert re.findall(rf"https://t\.example\.com/a/{scale}/\d+", text) == found


@pytest.mark.parametrize("locale", LOCALES)
def test_survey_question_from_the_step_replaces_the_default(
    store: TemplateStore, locale: str
) -> None:
    compiled = store.compile("nps_survey", locale)
    survey = {"scale": "nps", "question": "当社を同僚にすすめますか？", "options": options("nps")}
    html, text = render(compiled, sample_context(survey=survey))
    assert "当社を同僚にすすめますか？" in html and "当社を同僚にすすめますか？" in text


@pytest.mark.parametrize("locale", LOCALES)
@pytest.mark.parametrize("name", ["qbr_invite", "webinar_invite", "webinar_reminder"])
def test_invite_renders_rsvp_links_and_the_optional_join_link(
    store: TemplateStore, name: str, locale: str
) -> None:
    compiled = store.compile(name, locale)
    html, text = render(compiled, sample_context())
    for url in (
        "https://t.example.com/r/yes",
        "https://t.example.com/r/no",
        "https://t.example.com/c/join",
    ):
        assert f'href="{url}"' in html and url in text
    invite = {**sample_context()["invite"], "join_url": ""}
    html, text = render(compiled, sample_context(invite=invite))
    assert "https://t.example.com/c/join" not in html + text
    assert "2027年1月20日（水）16:00" in html and "2027年1月20日（水）16:00" in text


@pytest.mark.parametrize("locale", LOCALES)
def test_jinja_with_a_less_than_sign_survives_mjml(store: TemplateStore, locale: str) -> None:
    """MJML's parser chokes on a bare '<': the store shields every Jinja tag from it."""
    compiled = store.compile("renewal_reminder", locale)
    assert (
        "{% if account.days_to_renewal is not none and account.days_to_renewal <= 30 %}"
        in compiled.html
    )
    soon = dict(sample_context()["account"], days_to_renewal=28)
    later = dict(sample_context()["account"], days_to_renewal=88)
    soon_html, soon_text = render(compiled, sample_context(account=soon))
    later_html, later_text = render(compiled, sample_context(account=later))
    assert soon_html != later_html and soon_text != later_text
    assert "28" in soon_text and "88" in later_text


@pytest.mark.parametrize("locale", LOCALES)
def test_owner_notification_shows_task_due_date_and_account_link(
    store: TemplateStore, locale: str
) -> None:
    html, text = render(store.compile("owner_task_notification", locale), sample_context())
    assert 'href="https://cs.example.com/tasks/7"' in html
    assert 'href="https://cs.example.com/accounts/1"' in html
    for part in (html, text):
        assert "株式会社サンプルへ電話：NPS 3点" in part and "2027年1月22日" in part
    assert ("電話" if locale == "ja" else "Call") in text


# -- the journeys name only templates that exist -------------------------------------


def _template_names(node: Any) -> Iterator[str]:
    """Every value under a ``template`` key, at any depth (variants included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "template" and isinstance(value, str):
                yield value
            else:
                yield from _template_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _template_names(item)


def _journey_files() -> list[Path]:
    return sorted(
        p
        for p in JOURNEYS.glob("*.yaml")
        if p.name not in ("segments.yaml", "triggers.yaml", "scorecards.yaml")
    )


def test_the_playbooks_are_shipped() -> None:
    assert {p.stem for p in _journey_files()} == {
        "high_touch_renewal",
        "low_touch_health_red",
        "low_touch_nps",
        "low_touch_renewal",
        "low_touch_webinar",
        "tech_touch_csat",
        "tech_touch_onboarding",
        "tech_touch_usage_drop",
    }


@pytest.mark.parametrize("path", _journey_files(), ids=lambda p: p.stem)
def test_every_template_a_journey_names_exists_in_both_locales(
    store: TemplateStore, path: Path
) -> None:
    names = set(_template_names(yaml.safe_load(path.read_text(encoding="utf-8"))))
    assert names
    for name in names:
        assert store.locales(name) == LOCALES, f"{path.name}: template {name!r}"


def test_variant_templates_are_found_too(store: TemplateStore) -> None:
    doc = yaml.safe_load((JOURNEYS / "tech_touch_onboarding.yaml").read_text(encoding="utf-8"))
    assert "onboarding_welcome_video" in set(_template_names(doc))


@pytest.mark.parametrize("path", _journey_files(), ids=lambda p: p.stem)
def test_every_subject_is_written_in_english_and_japanese(path: Path) -> None:
    def subjects(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "subject":
                    yield value
                else:
                    yield from subjects(value)
        elif isinstance(node, list):
            for item in node:
                yield from subjects(item)

    found = list(subjects(yaml.safe_load(path.read_text(encoding="utf-8"))))
    assert found
    for subject in found:
        assert isinstance(subject, dict) and set(subject) == {"en", "ja"}, subject


# -- the store itself --------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the shipped templates to edit freely."""
    root = tmp_path / "templates"
    shutil.copytree(TEMPLATES, root)
    return root


def _write(root: Path, locale: str, name: str, mjml: str, text: str = "t\n") -> Path:
    path = root / locale / f"{name}.mjml"
    path.write_text(mjml, encoding="utf-8")
    (root / locale / f"{name}.txt").write_text(text, encoding="utf-8")
    return path


BODY = """<mjml lang="en">
  <mj-body>
    <mj-section>
      <mj-column>
        {content}
      </mj-column>
    </mj-section>
  </mj-body>
</mjml>
"""


def test_compile_cache_returns_the_same_object_for_the_same_content(tree: Path) -> None:
    store = TemplateStore(tree)
    first = store.compile("nps_survey", "ja")
    assert store.compile("nps_survey", "ja") is first
    assert store.compile("nps_survey", "ja-JP") is first  # same files, same object
    assert TemplateStore(tree).compile("nps_survey", "ja").hash == first.hash


def test_compile_recompiles_when_the_template_file_changes(tree: Path) -> None:
    store = TemplateStore(tree)
    first = store.compile("nps_survey", "en")
    path = tree / "en" / "nps_survey.mjml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("Best regards", "Kind regards"), encoding="utf-8"
    )
    second = store.compile("nps_survey", "en")
    assert second is not first and second.hash != first.hash
    assert "Kind regards" in second.html and "Kind regards" not in first.html
    assert store.compile("nps_survey", "en") is second


@pytest.mark.parametrize("partial", ["_footer.mjml", "_footer.txt"])
def test_compile_recompiles_when_a_shared_partial_changes(tree: Path, partial: str) -> None:
    store = TemplateStore(tree)
    first = store.compile("onboarding_tips", "ja")
    path = tree / "ja" / partial
    path.write_text(
        path.read_text(encoding="utf-8").replace("送信者：", "発信者："), encoding="utf-8"
    )
    second = store.compile("onboarding_tips", "ja")
    assert second.hash != first.hash
    assert "発信者：" in (second.html if partial.endswith(".mjml") else second.text)


def test_the_text_part_has_its_footer_included(store: TemplateStore) -> None:
    source = store.source("renewal_reminder", "en")
    assert "{% include" not in source.text
    assert "{{ unsubscribe_url }}" in source.text
    assert set(source.includes) == {"_head.mjml", "_header.mjml", "_footer.mjml"}


def test_an_untranslated_locale_falls_back_to_the_default(tree: Path) -> None:
    (tree / "ja" / "usage_drop_nudge.mjml").unlink()
    (tree / "ja" / "usage_drop_nudge.txt").unlink()
    store = TemplateStore(tree)
    assert store.locales("usage_drop_nudge") == ["en"]
    assert store.source("usage_drop_nudge", "ja").locale == "en"
    assert store.compile("usage_drop_nudge", "ja").locale == "en"
    assert store.source("nps_survey", "fr").locale == "en"
    assert store.source("nps_survey", "ja_JP").locale == "ja"
    assert store.source("nps_survey", "").locale == "en"


def test_a_half_translated_template_is_an_error_naming_the_missing_file(tree: Path) -> None:
    (tree / "ja" / "nps_thanks.txt").unlink()
    with pytest.raises(TemplateError) as info:
        TemplateStore(tree).source("nps_thanks", "ja")
    assert info.value.path == tree / "ja" / "nps_thanks.txt"
    assert "nps_thanks.txt" in str(info.value)


@pytest.mark.parametrize("name", ["no_such_template", "../ja/nps_survey", "_footer", "NPS"])
def test_unknown_or_unsafe_names_are_not_found(store: TemplateStore, name: str) -> None:
    assert not store.exists(name)
    with pytest.raises(TemplateNotFound):
        store.source(name, "en")


def test_template_errors_are_campaigns_errors() -> None:
    assert issubclass(TemplateError, CampaignsError)
    assert issubclass(TemplateNotFound, TemplateError)


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        ("<mj-text>never closed\n", 7, "<mj-text> (line 5) is still open"),
        ('<mj-buton href="{{ links.docs }}">Go</mj-buton>', 5, "did you mean <mj-button>"),
        ("<mj-text>{% if x %}open block</mj-text>", 5, "Jinja syntax"),
        ('<mj-image src="a.png" alt="a" width="{{ w }}" />', 5, "dropped the Jinja tag"),
        ("</mj-section><mj-section>", 5, "still open"),
        ('<mj-include path="_missing.mjml" />', 5, "does not exist"),
        ('<mj-include path="../../../etc/passwd" />', 5, "must be a path inside"),
    ],
)
def test_bad_mjml_raises_template_error_with_path_and_line(
    tree: Path, content: str, line: int, words: str
) -> None:
    path = _write(tree, "en", "broken", BODY.format(content=content))
    with pytest.raises(TemplateError) as info:
        TemplateStore(tree).compile("broken", "en")
    error = info.value
    assert error.path == path
    assert words in str(error)
    assert str(error).startswith(f"{path}:{line}: ")
    assert error.line == line


def test_mjml_parser_errors_name_the_file(tree: Path) -> None:
    path = _write(tree, "en", "broken", BODY.format(content="<mj-text>a < b</mj-text>"))
    with pytest.raises(TemplateError) as info:
        TemplateStore(tree).compile("broken", "en")
    assert info.value.path == path and "MJML" in str(info.value)


def test_jinja_where_mjml_cannot_take_it_is_reported_at_its_line(tree: Path) -> None:
    source = (
        '<mjml lang="ja">\n<mj-head>\n{% if x %}<mj-title>t</mj-title>{% endif '
        "%}\n</mj-head>\n<mj-body></mj-body>\n</mjml>\n"
    )
    path = _write(tree, "en", "broken", source)
    with pytest.raises(TemplateError) as info:
        TemplateStore(tree).compile("broken", "en")
    assert (info.value.path, info.value.line) == (path, 3)
    assert "{% if x %}" in str(info.value)


def test_bad_text_part_raises_template_error_with_path_and_line(tree: Path) -> None:
    _write(
        tree, "en", "broken", BODY.format(content="<mj-text>ok</mj-text>"), "line one\n{{ oops }\n"
    )
    with pytest.raises(TemplateError) as info:
        TemplateStore(tree).compile("broken", "en")
    assert info.value.path == tree / "en" / "broken.txt"
    assert info.value.line == 2


def test_text_includes_must_name_a_literal_file(tree: Path) -> None:
    _write(
        tree,
        "en",
        "broken",
        BODY.format(content="<mj-text>ok</mj-text>"),
        "a\n{% include footer_name %}\n",
    )
    with pytest.raises(TemplateError) as info:
        TemplateStore(tree).compile("broken", "en")
    assert info.value.line == 2 and "literal" in str(info.value)


def test_a_broken_partial_is_reported_in_the_partial(tree: Path) -> None:
    footer = tree / "en" / "_footer.mjml"
    footer.write_text("<mj-section>\n  <mj-column>\n    <mj-txt>x</mj-txt>\n", encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        TemplateStore(tree).compile("nps_survey", "en")
    assert (info.value.path, info.value.line) == (footer, 3)


def test_jinja_blocks_between_sections_survive_in_mj_raw(tree: Path) -> None:
    """The documented way to repeat whole sections: the block tags in mj-raw."""
    mjml = (
        '<mjml lang="en"><mj-body>\n'
        "<mj-raw>{% for item in items %}</mj-raw>\n"
        '<mj-section><mj-column><mj-button href="{{ item.url }}">{{ item.label '
        "}}</mj-button></mj-column></mj-section>\n"
        "<mj-raw>{% endfor %}</mj-raw>\n"
        "</mj-body></mjml>\n"
    )
    _write(tree, "en", "loop", mjml)
    compiled = TemplateStore(tree).compile("loop", "en")
    items = [{"url": f"https://x.example/{i}?a=1&b=2", "label": f"ボタン{i}"} for i in range(3)]
    html = HTML.from_string(compiled.html).render(items=items)
    assert html.count('href="https://x.example/') == 3
    assert 'href="https://x.example/2?a=1&amp;b=2"' in html and "ボタン2" in html
