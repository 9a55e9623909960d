"""``campaigns validate`` and the legal footer: every Japanese template a journey sends must
show the four items of 特定電子メール法 once rendered with the brand's identity; a footer or a
sender.yaml that lacks one fails validation, naming the item and the fix."""

from __future__ import annotations

import shutil
import textwrap

import pytest

from tests.kit import ROOT

JOURNEY = textwrap.dedent(
    """\
    journey: webinar
    name: Webinar
    segments: [everyone]
    entry: {trigger: segment}
    steps:
      - id: invite
        email: {template: webinar_invite, subject: {en: Join us, ja: ご案内}}
    """
)


@pytest.fixture
def project(cli):
    """The CLI's project folder with the shipped templates and one journey sending one."""
    shutil.rmtree(cli.folder / "templates")
    shutil.copytree(ROOT / "templates", cli.folder / "templates")
    (cli.folder / "journeys" / "webinar.yaml").write_text(JOURNEY, encoding="utf-8")
    return cli


def _edit(path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_shipped_journeys_and_footers_pass(cli):
    cli.env["CAMPAIGNS_JOURNEYS"] = str(ROOT / "journeys")
    cli.env["CAMPAIGNS_TEMPLATES"] = str(ROOT / "templates")
    done = cli("validate")
    assert done.exit_code == 0, done.output
    assert "journeys valid" in done.output


def test_a_footer_without_the_postal_address_fails_naming_the_item(project):
    footer = project.folder / "templates" / "ja" / "_footer.mjml"
    _edit(footer, "　{{ sender.postal_address }}", "")
    done = project("validate")
    assert done.exit_code == 1
    lines = [line for line in done.output.splitlines() if "webinar_invite" in line]
    assert lines == [
        f"{project.folder}/templates/ja/webinar_invite.mjml:1:1: the footer lacks the sender's "
        "postal address (特定電子メール法 requires it in every marketing email) (print "
        "{{ sender.postal_address }} in the footer)"
    ]


def test_a_sender_file_without_an_inquiry_contact_fails_for_both_parts(project):
    sender = project.folder / "templates" / "sender.yaml"
    text = sender.read_text(encoding="utf-8")
    start = text.index("  inquiry:")
    end = text.index("  refusal:")
    sender.write_text(text[:start] + text[end:], encoding="utf-8")
    done = project("validate")
    assert done.exit_code == 1
    for part in ("mjml", "txt"):
        assert (
            f"templates/ja/webinar_invite.{part}:1:1: the footer lacks an inquiry contact "
            f"(特定電子メール法 requires it in every marketing email) (set inquiry (email, phone "
            f"or url) in {project.folder}/templates/sender.yaml)"
        ) in done.output


@pytest.mark.parametrize(
    ("old", "item"),
    [
        ("{{ sender.name }}", "the sender's name"),
        ("{{ sender.refusal }}", "the statement that the recipient may refuse further mail"),
        ("{{ sender.unsubscribe_address }}", "the means to refuse further mail"),
        ("{{ unsubscribe_url }}", "the means to refuse further mail"),
    ],
)
def test_each_missing_item_of_the_text_footer_is_named(project, old, item):
    footer = project.folder / "templates" / "ja" / "_footer.txt"
    text = footer.read_text(encoding="utf-8")
    footer.write_text(text.replace(old, "x"), encoding="utf-8")
    done = project("validate")
    assert done.exit_code == 1
    assert f"templates/ja/webinar_invite.txt:1:1: the footer lacks {item}" in done.output


def test_a_broken_sender_file_is_a_validation_problem_at_its_place(project):
    (project.folder / "templates" / "sender.yaml").write_text(
        "default:\n  name: [Example]\n", encoding="utf-8"
    )
    done = project("validate")
    assert done.exit_code == 1
    assert "templates/sender.yaml:2:9: 'name' must be text, not a list" in done.output


def test_a_journey_may_name_a_brand_of_the_sender_file(project):
    (project.folder / "journeys" / "webinar.yaml").write_text(
        JOURNEY.replace("steps:", "brand: acme\nsteps:"), encoding="utf-8"
    )
    done = project("validate")
    assert done.exit_code == 1
    assert "webinar.yaml:5:8: unknown brand 'acme'" in done.output
