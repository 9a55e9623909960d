"""The journey DSL validator: every rule has a failing example with its expected line:col."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from campaigns.exceptions import JourneyError
from campaigns.journeys.model import BranchStep, EmailStep, StepType, Trigger, WaitUntilStep
from campaigns.journeys.parse import parse_journey
from campaigns.journeys.segments import parse_segments
from campaigns.journeys.validate import validate_files

SEGMENTS = parse_segments(
    textwrap.dedent(
        """
        tiers:
          high_touch: {when: arr >= 5000000 or plan == 'enterprise'}
          low_touch: {when: arr >= 1000000}
          tech_touch: {when: true}
        segments:
          webinar_invitees: {when: contact.role != 'billing'}
        """
    )
)
TEMPLATES = {"welcome", "nps_survey", "webinar_invite", "renewal_reminder"}

HEAD = """\
journey: demo
name: Demo
segments: [low_touch]
entry:
  trigger: segment
steps:
"""


def problems(text: str) -> list[str]:
    """The problems as 'line:col: message (hint)', path stripped."""
    try:
        parse_journey(text, "j.yaml", segments=SEGMENTS, templates=TEMPLATES)
    except JourneyError as exc:
        return [str(p).removeprefix("j.yaml:") for p in exc.problems]
    return []


def steps(body: str) -> str:
    return HEAD + textwrap.dedent(body)


def test_a_valid_journey_builds_typed_steps():
    journey = parse_journey(
        steps(
            """\
            - id: ask_nps
              survey: {scale: nps, template: nps_survey, subject: {en: "How are we doing?",
                  ja: "ご意見をお聞かせください"}}
            - id: wait_answer
              wait_until: {answered: ask_nps, timeout: 7 days}
            - id: route
              branch:
                - when: answer('ask_nps') is not none and answer('ask_nps') <= 6
                  goto: call
                - else: done
            - id: call
              task: {title: "Call {{ account.name }}", due: 2日}
            - id: done
              exit: completed
            """
        ),
        "j.yaml",
        segments=SEGMENTS,
        templates=TEMPLATES,
    )
    assert journey.entry.trigger == Trigger.SEGMENT
    assert [s.type for s in journey.steps] == [
        StepType.SURVEY,
        StepType.WAIT_UNTIL,
        StepType.BRANCH,
        StepType.TASK,
        StepType.EXIT,
    ]
    wait = journey.steps[1].config
    assert isinstance(wait, WaitUntilStep) and wait.timeout == timedelta(days=7)
    branch = journey.steps[2].config
    assert (
        isinstance(branch, BranchStep)
        and branch.arms[0].goto == "call"
        and branch.otherwise == "done"
    )
    assert journey.step("call").config.due == timedelta(days=2)  # type: ignore[union-attr]
    assert journey.templates() == ["nps_survey"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("journey: [\n", "2:1: YAML syntax error", id="yaml-syntax"),
        pytest.param("a: 1\n\tb: 2\n", "2:1: YAML syntax error", id="tab-indent"),
        pytest.param("- just\n- a list\n", "1:1: a journey file is a mapping", id="not-a-mapping"),
        pytest.param(
            HEAD.replace("name: Demo\n", "name: Demo\nname: Again\n")
            + "  - {id: a, wait: 1 day}\n",
            "3:1: duplicate key 'name' (it is already set at line 2; keep one)",
            id="duplicate-key",
        ),
        pytest.param(
            HEAD.replace("name: Demo\n", "nmae: Demo\n") + "  - {id: a, wait: 1 day}\n",
            "2:1: unknown key 'nmae' in the journey (did you mean 'name'?)",
            id="unknown-top-key",
        ),
        pytest.param(
            HEAD.replace("name: Demo\n", "") + "  - {id: a, wait: 1 day}\n",
            "1:1: the journey needs 'name'",
            id="missing-name",
        ),
        pytest.param(
            HEAD.replace("journey: demo", "journey: Demo Journey") + "  - {id: a, wait: 1 day}\n",
            "1:10: bad journey 'Demo Journey'",
            id="bad-journey-id",
        ),
        pytest.param(
            HEAD.replace("[low_touch]", "[low_tuch]") + "  - {id: a, wait: 1 day}\n",
            "3:12: unknown segment 'low_tuch' (did you mean 'low_touch'?)",
            id="unknown-segment",
        ),
        pytest.param(
            HEAD.replace("[low_touch]", "[]") + "  - {id: a, wait: 1 day}\n",
            "3:11: 'segments' is empty",
            id="empty-segments",
        ),
        pytest.param(
            HEAD.replace("trigger: segment", "trigger: segmnt") + "  - {id: a, wait: 1 day}\n",
            "5:12: unknown trigger 'segmnt' (did you mean 'segment'?)",
            id="unknown-trigger",
        ),
        pytest.param(
            HEAD.replace("trigger: segment", "trigger: event") + "  - {id: a, wait: 1 day}\n",
            "5:3: an event entry needs 'event'",
            id="event-entry-without-event",
        ),
        pytest.param(
            HEAD.replace(
                "trigger: segment", "trigger: date\n  field: renewal_dat\n  offset: 90 days before"
            )
            + "  - {id: a, wait: 1 day}\n",
            "6:10: 'renewal_dat' is not a date field (did you mean 'renewal_date'?)",
            id="date-entry-bad-field",
        ),
        pytest.param(
            HEAD.replace(
                "trigger: segment", "trigger: date\n  field: renewal_date\n  offset: 90 days ahead"
            )
            + "  - {id: a, wait: 1 day}\n",
            "7:11: bad offset: '90 days ahead' is not an offset (write a duration and 'before' "
            "or 'after', e.g. '90 days before')",
            id="bad-offset",
        ),
        pytest.param(
            HEAD.replace("steps:\n", "re_entry: sometimes\nsteps:\n")
            + "  - {id: a, wait: 1 day}\n",
            "6:11: bad re_entry 'sometimes'",
            id="bad-re-entry",
        ),
        pytest.param(
            HEAD.replace("steps:\n", "exit_when:\n  - evnt: churned\nsteps:\n")
            + "  - {id: a, wait: 1 day}\n",
            "7:5: unknown key 'evnt' in an exit rule (did you mean 'event'?)",
            id="bad-exit-rule",
        ),
        pytest.param(
            HEAD.replace("steps:\n", "goal: {within: 30 days}\nsteps:\n")
            + "  - {id: a, wait: 1 day}\n",
            "6:7: the goal needs 'event'",
            id="goal-without-event",
        ),
        pytest.param(
            HEAD.replace(
                "steps:\n", 'sending_window: {days: weekdays, hours: "18:00-09:00"}\nsteps:\n'
            )
            + "  - {id: a, wait: 1 day}\n",
            "6:41: the window '18:00-09:00' ends before it starts",
            id="window-backwards",
        ),
        pytest.param(
            HEAD.replace("steps:\n", "sending_window: {days: [mon, fryday]}\nsteps:\n")
            + "  - {id: a, wait: 1 day}\n",
            "6:30: unknown day 'fryday'",
            id="window-bad-day",
        ),
        pytest.param(
            HEAD.replace("steps:\n", "sending_window: {time_zone: Tokyo}\nsteps:\n")
            + "  - {id: a, wait: 1 day}\n",
            "6:29: unknown time zone 'Tokyo' (did you mean 'Asia/Tokyo'?)",
            id="window-bad-zone",
        ),
        pytest.param(
            HEAD.replace("steps:\n", "holdout: 80%\nsteps:\n") + "  - {id: a, wait: 1 day}\n",
            "6:10: bad holdout '80%'",
            id="holdout-too-big",
        ),
        pytest.param(
            HEAD.replace("steps:\n", "audience: contact.rol == 'admin'\nsteps:\n")
            + "  - {id: a, wait: 1 day}\n",
            "6:19: unknown contact field 'rol' (did you mean 'role'?)",
            id="audience-unknown-field",
        ),
        pytest.param(HEAD + "  []\n", "7:3: 'steps' must be a non-empty list", id="no-steps"),
        pytest.param(steps("- wait: 1 day\n"), "7:3: step 1 has no 'id'", id="step-without-id"),
        pytest.param(
            steps("- {id: a, wait: 1 day}\n- {id: a, wait: 2 days}\n"),
            "8:8: duplicate step id 'a' (already used at line 7)",
            id="duplicate-step-id",
        ),
        pytest.param(
            steps("- {id: Welcome!, wait: 1 day}\n"), "7:8: bad id 'Welcome!'", id="bad-step-id"
        ),
        pytest.param(
            steps("- id: a\n  emial: {template: welcome, subject: Hi}\n"),
            "8:3: unknown key 'emial' in step 'a' (did you mean 'email'?)",
            id="unknown-step-type",
        ),
        pytest.param(steps("- id: a\n"), "7:3: step 'a' has no step type", id="missing-step-type"),
        pytest.param(
            steps("- id: a\n  wait: 1 day\n  exit: done\n"),
            "9:3: step 'a' has more than one step type (wait, exit)",
            id="two-step-types",
        ),
        pytest.param(
            steps("- id: a\n  email: {template: welcome, subject: Hi, subjct: Hey}\n"),
            "8:43: unknown key 'subjct' in the email of step 'a' (did you mean 'subject'?)",
            id="unknown-email-key",
        ),
        pytest.param(
            steps("- id: a\n  email: {template: welcom, subject: Hi}\n"),
            "8:21: unknown template 'welcom' (did you mean 'welcome'?)",
            id="unknown-template",
        ),
        pytest.param(
            steps("- id: a\n  email: {template: welcome}\n"),
            "8:10: missing 'subject'",
            id="missing-subject",
        ),
        pytest.param(
            steps("- id: a\n  email: {template: welcome, subject: 'Hi {{ contact.name '}\n"),
            "8:39: bad template in 'subject'",
            id="subject-bad-jinja",
        ),
        pytest.param(
            steps(
                "- id: a\n  email:\n    template: welcome\n    subject: {en: Hi, 日本語: やあ}\n"
            ),
            "10:23: '日本語' is not a locale",
            id="subject-bad-locale",
        ),
        pytest.param(
            steps(
                "- id: a\n  email:\n    template: welcome\n    subject: Hi\n    variants:\n      "
                "- {id: b, subject: Hey}\n"
            ),
            "12:7: 'variants' must be a list of two or more variants",
            id="one-variant",
        ),
        pytest.param(
            steps(
                "- id: a\n  email:\n    template: welcome\n    subject: Hi\n    variants:\n      "
                "- {id: b, subject: Hey}\n      - {id: b, subject: Yo}\n"
            ),
            "13:14: duplicate variant id 'b'",
            id="duplicate-variant",
        ),
        pytest.param(
            steps(
                "- id: a\n  email:\n    template: welcome\n    subject: Hi\n    variants:\n      "
                "- {id: b, template: nope}\n      - {id: c, subject: Yo}\n"
            ),
            "12:27: unknown template 'nope'",
            id="variant-unknown-template",
        ),
        pytest.param(
            steps("- {id: a, wait: 3 dys}\n"),
            "7:17: bad wait: unknown unit 'dys' in '3 dys'",
            id="bad-duration-unit",
        ),
        pytest.param(
            steps("- {id: a, wait: 3}\n"),
            "7:17: bad wait: '3' has no unit (write '3 days' or '3 hours')",
            id="duration-without-unit",
        ),
        pytest.param(
            steps("- {id: a, wait: 0 days}\n"),
            "7:17: bad wait: '0 days' is zero",
            id="zero-duration",
        ),
        pytest.param(
            steps("- {id: a, wait: 5000 days}\n"),
            "7:17: bad wait: '5000 days' is longer than 3 years",
            id="huge-duration",
        ),
        pytest.param(
            steps("- id: a\n  wait_until: {answered: a, timeout: 2 days}\n"),
            "8:26: step 'a' waits for itself",
            id="wait-for-itself",
        ),
        pytest.param(
            steps(
                "- id: a\n  wait_until: {answered: b, timeout: 2 days}\n- id: b\n  survey: "
                "{scale: nps, template: nps_survey, subject: Q}\n"
            ),
            "8:26: 'b' runs later than step 'a'",
            id="wait-for-later-step",
        ),
        pytest.param(
            steps("- id: a\n  wait_until: {answered: nps, timeout: 2 days}\n"),
            "8:26: no step 'nps'",
            id="wait-for-missing-step",
        ),
        pytest.param(
            steps(
                "- id: w\n  wait: 1 day\n- id: a\n  wait_until: {answered: w, timeout: 2 days}\n"
            ),
            "10:26: 'answered: w' needs a survey or invite step",
            id="wait-answer-of-non-survey",
        ),
        pytest.param(
            steps("- id: a\n  wait_until: {event: renewed}\n"),
            "8:15: the wait_until of step 'a' needs 'timeout'",
            id="wait-until-without-timeout",
        ),
        pytest.param(
            steps("- id: a\n  wait_until: {event: renewed, opened: a, timeout: 1 day}\n"),
            "8:15: wait_until needs exactly one of",
            id="wait-until-two-signals",
        ),
        pytest.param(
            steps(
                "- id: a\n  branch:\n    - when: clicked('b')\n      goto: b\n- id: b\n  email: "
                "{template: welcome, subject: Hi}\n"
            ),
            "9:22: clicked('b') names a step that runs later",
            id="branch-on-later-step",
        ),
        pytest.param(
            steps(
                "- id: a\n  branch:\n    - when: opend('x')\n      goto: b\n- {id: b, exit: done}\n"
            ),
            "9:13: unknown function 'opend()' (did you mean 'opened'?)",
            id="branch-unknown-function",
        ),
        pytest.param(
            steps(
                "- id: a\n  branch:\n    - when: 'arr >= '\n      goto: b\n- {id: b, exit: done}\n"
            ),
            "9:14: cannot read the condition",
            id="branch-condition-syntax",
        ),
        pytest.param(
            steps(
                "- id: a\n  branch:\n    - when: arr >= 'lots'\n      goto: b\n- {id: b, exit: "
                "done}\n"
            ),
            "9:13: arr is a number but is compared with 'lots'",
            id="branch-type-mismatch",
        ),
        pytest.param(
            steps(
                "- id: a\n  branch:\n    - when: \"contract_status == 'actve'\"\n      goto: "
                "b\n- {id: b, exit: done}\n"
            ),
            "9:34: unknown contract_status 'actve' (did you mean 'active'?)",
            id="branch-unknown-enum",
        ),
        pytest.param(
            steps(
                "- {id: s, wait: 1 day}\n- id: a\n  branch:\n    - when: true\n      goto: s\n- "
                "{id: b, exit: done}\n"
            ),
            "11:13: 'goto: s' jumps back",
            id="goto-backwards",
        ),
        pytest.param(
            steps(
                "- id: a\n  branch:\n    - when: true\n      goto: nowhere\n- {id: b, exit: done}\n"
            ),
            "10:13: no step 'nowhere' to go to",
            id="goto-missing-step",
        ),
        pytest.param(
            steps(
                "- id: a\n  branch:\n    - else: b\n    - when: true\n      goto: b\n- {id: b, "
                "exit: done}\n"
            ),
            "9:7: 'else' must be the last arm",
            id="else-not-last",
        ),
        pytest.param(
            steps("- id: a\n  branch:\n    - when: true\n- {id: b, exit: done}\n"),
            "9:7: a branch arm needs 'goto'",
            id="arm-without-goto",
        ),
        pytest.param(
            steps(
                "- id: a\n  branch:\n    - when: \"answer('a') > 3\"\n      goto: b\n- {id: b, "
                "exit: done}\n"
            ),
            "9:22: answer('a') names no step",
            id="answer-of-unknown-step",
        ),
        pytest.param(
            steps(
                "- {id: w, wait: 1 day}\n- id: a\n  branch:\n    - when: \"answer('w') > 3\"\n   "
                "   goto: b\n- {id: b, exit: done}\n"
            ),
            "10:22: answer('w') needs a survey or invite step, but 'w' is not one",
            id="answer-of-non-survey",
        ),
        pytest.param(
            steps("- {id: a, exit: done}\n- {id: b, wait: 1 day}\n"),
            "8:3: step 'b' can never be reached",
            id="unreachable-after-exit",
        ),
        pytest.param(
            steps(
                "- id: a\n  branch:\n    - when: true\n      goto: c\n    - else: c\n- {id: b, "
                "wait: 1 day}\n- {id: c, exit: done}\n"
            ),
            "12:3: step 'b' can never be reached",
            id="unreachable-skipped-by-branch",
        ),
        pytest.param(
            steps("- id: a\n  survey: {scale: ces, template: nps_survey, subject: Q}\n"),
            "8:19: unknown scale 'ces'",
            id="survey-bad-scale",
        ),
        pytest.param(
            steps(
                "- id: a\n  invite: {event_name: Webinar, starts_at: 2027-01-20T16:00:00, "
                "template: webinar_invite, subject: Join}\n"
            ),
            "8:44: starts_at has no time zone offset",
            id="invite-naive-time",
        ),
        pytest.param(
            steps(
                "- id: a\n  invite: {event_name: Webinar, starts_at: next tuesday, template: "
                "webinar_invite, subject: Join}\n"
            ),
            "8:44: bad starts_at 'next tuesday'",
            id="invite-bad-time",
        ),
        pytest.param(
            steps(
                "- id: a\n  invite: {event_name: Webinar, starts_at: 2027-01-20T16:00:00+09:00, "
                "url: 'javascript:alert(1)', template: webinar_invite, subject: Join}\n"
            ),
            "8:76: bad URL 'javascript:alert(1)'",
            id="invite-bad-url",
        ),
        pytest.param(
            steps("- id: a\n  task: {kind: lunch, title: Meet}\n"),
            "8:16: unknown kind 'lunch'",
            id="task-bad-kind",
        ),
        pytest.param(
            steps("- id: a\n  task: {title: Call, assignee: the boss}\n"),
            "8:33: bad assignee 'the boss'",
            id="task-bad-assignee",
        ),
        pytest.param(
            steps("- id: a\n  in_app: {title: Hi}\n"),
            "8:11: missing 'body'",
            id="in-app-without-body",
        ),
        pytest.param(
            steps("- id: a\n  webhook: {payload: {a: 1}}\n"),
            "8:12: the webhook of step 'a' needs 'url'",
            id="webhook-without-url",
        ),
        pytest.param(
            steps("- id: a\n  webhook: {url: 'ftp://x.example.com', payload: {}}\n"),
            "8:18: bad URL 'ftp://x.example.com'",
            id="webhook-bad-url",
        ),
        pytest.param(
            steps("- id: a\n  update: {set: {arr: 5}}\n"),
            "8:18: 'arr' cannot be set",
            id="update-bad-field",
        ),
        pytest.param(
            steps(
                "- id: a\n  channel: best_of [email, sms]\n  email: {template: welcome, subject: "
                "Hi}\n"
            ),
            "8:12: unknown channel 'sms'",
            id="best-of-unknown-channel",
        ),
        pytest.param(
            steps(
                "- id: a\n  channel: best_of [email, task]\n  email: {template: welcome, "
                "subject: Hi}\n"
            ),
            "8:12: best_of names 'task' but step 'a' has no 'task:' block",
            id="best-of-missing-block",
        ),
        pytest.param(
            steps("- id: a\n  channel: best of email\n  email: {template: welcome, subject: Hi}\n"),
            "8:12: bad channel 'best of email'",
            id="bad-channel-syntax",
        ),
        pytest.param(
            steps("- id: a\n  goal: answered\n  email: {template: welcome, subject: Hi}\n"),
            "8:9: goal 'answered' needs a survey or invite step",
            id="goal-answered-on-email",
        ),
        pytest.param(
            steps("- id: a\n  category: spam\n  email: {template: welcome, subject: Hi}\n"),
            "8:13: unknown category 'spam'",
            id="bad-category",
        ),
        pytest.param(
            steps("- id: a\n  exit: {reason: done}\n"),
            "8:9: exit takes a short reason",
            id="bad-exit",
        ),
        pytest.param(
            steps("- id: a\n  send_time: best_houre\n  email: {template: welcome, subject: Hi}\n"),
            "8:14: unknown send_time 'best_houre' (did you mean 'best_hour'?)",
            id="send-time-typo",
        ),
        pytest.param(
            steps("- id: a\n  send_time: '10:00'\n  email: {template: welcome, subject: Hi}\n"),
            "8:14: unknown send_time '10:00' (one of: now, best_hour)",
            id="send-time-clock",
        ),
        pytest.param(
            steps("- id: a\n  send_time: {hour: 10}\n  email: {template: welcome, subject: Hi}\n"),
            "8:14: 'send_time' must be text, not a mapping",
            id="send-time-mapping",
        ),
        pytest.param(
            steps("- id: a\n  send_time:\n  email: {template: welcome, subject: Hi}\n"),
            "8:13: 'send_time' is empty",
            id="send-time-empty",
        ),
        pytest.param(
            steps("- id: a\n  send_time: best_hour\n  task: {title: Call}\n"),
            "8:14: send_time 'best_hour' needs a step that sends an email (it times email, "
            "survey and invite steps; remove it here)",
            id="send-time-on-task",
        ),
        pytest.param(
            steps("- id: a\n  sendtime: best_hour\n  email: {template: welcome, subject: Hi}\n"),
            "8:3: unknown key 'sendtime' in step 'a' (did you mean 'send_time'?)",
            id="send-time-key-typo",
        ),
    ],
)
def test_each_rule_reports_its_place(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), f"expected {expected!r} in {found}"


def test_all_problems_are_reported_at_once_in_file_order():
    found = problems(
        steps(
            """\
            - id: a
              wait: 3 dys
            - id: b
              email: {template: welcom, subject: Hi}
            - id: c
              branch:
                - when: opend('a')
                  goto: a
            """
        )
    )
    assert len(found) >= 4
    lines = [int(p.split(":")[0]) for p in found]
    assert lines == sorted(lines)


def test_journey_ids_must_be_unique_across_files(tmp_path):
    for name in ("one.yaml", "two.yaml"):
        (tmp_path / name).write_text(HEAD + "  - {id: a, wait: 1 day}\n", encoding="utf-8")
    journeys, found = validate_files(sorted(tmp_path.glob("*.yaml")), segments=SEGMENTS)
    assert [j.key for j, _ in journeys] == ["demo"]
    assert (
        len(found) == 1
        and "also used by" in found[0].message
        and found[0].path.endswith("two.yaml")
    )


def test_yes_and_no_stay_strings_and_japanese_text_is_kept():
    journey = parse_journey(
        steps(
            """\
            - id: a
              email:
                template: welcome
                subject: {en: "yes", ja: "ご契約更新のご案内"}
            - id: b
              update: {set: {contact.attributes.rsvp: yes}}
            """
        ),
        segments=SEGMENTS,
        templates=TEMPLATES,
    )
    email = journey.steps[0].config
    assert isinstance(email, EmailStep) and email.subject == {
        "en": "yes",
        "ja": "ご契約更新のご案内",
    }
    assert journey.steps[1].config.set == {"contact.attributes.rsvp": "yes"}  # type: ignore[union-attr]


def test_best_of_step_keeps_a_block_per_channel():
    journey = parse_journey(
        steps(
            """\
            - id: reminder
              channel: best_of [email, task]
              goal: clicked
              email: {template: renewal_reminder, subject: Renewal}
              task: {title: "Call {{ account.name }}"}
            """
        ),
        segments=SEGMENTS,
        templates=TEMPLATES,
    )
    step = journey.steps[0]
    assert step.best_of == ("email", "task") and set(step.blocks) == {"email", "task"}
    assert step.goal == "clicked"


def test_missing_file_and_non_utf8_file_are_clean_errors(tmp_path):
    from campaigns.journeys.parse import load_journey

    with pytest.raises(JourneyError, match="file not found"):
        load_journey(tmp_path / "nope.yaml")
    bad = tmp_path / "sjis.yaml"
    bad.write_bytes("name: 日本語\n".encode("cp932"))
    with pytest.raises(JourneyError, match="not UTF-8"):
        load_journey(bad)


def test_a_branch_with_only_else_is_a_plain_jump():
    journey = parse_journey(
        steps("- id: jump\n  branch: [{else: done}]\n- {id: done, exit: completed}\n"),
        segments=SEGMENTS,
    )
    branch = journey.steps[0].config
    assert isinstance(branch, BranchStep) and branch.arms == () and branch.otherwise == "done"
    found = problems(
        steps(
            "- id: jump\n  branch: [{else: done}]\n- {id: skipped, wait: 1 day}\n- {id: done, "
            "exit: completed}\n"
        )
    )
    assert found == [
        "9:3: step 'skipped' can never be reached (the step before it ('jump') never continues "
        "to it and no goto names it)"
    ]


def test_send_time_best_hour_is_kept_on_email_survey_invite_and_best_of_steps():
    journey = parse_journey(
        steps(
            """\
            - id: hello
              send_time: best_hour
              email: {template: welcome, subject: {en: Hi, ja: こんにちは}}
            - id: ask
              send_time: best_hour
              survey: {scale: nps, template: nps_survey, subject: Q}
            - id: reach
              channel: best_of [email, in_app]
              send_time: best_hour
              email: {template: welcome, subject: Hi}
              in_app: {title: やあ, body: お知らせ}
            - id: plain
              send_time: now
              email: {template: welcome, subject: Hi}
            """
        ),
        segments=SEGMENTS,
        templates=TEMPLATES,
    )
    assert [s.send_time for s in journey.steps] == ["best_hour", "best_hour", "best_hour", None]
    assert (
        journey.to_json()["steps"][0]["send_time"] == "best_hour"
    )  # stored with the version: the stats read it there
