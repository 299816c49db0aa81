"""`canvass test --channel web`: every conversation file played through the survey's rendered
web pages, with the same expectations. What has no web counterpart is listed here, with why:
a step the player skips must be one this file expects it to skip, never a silent pass."""

from pathlib import Path

import aiohttp_jinja2
import jinja2
import pytest

from engine.runtime.web.handlers import TEMPLATES
from engine.tools.cli import main
from engine.tools.conversation_test import run_tests
from engine.tools.web_conversation import WebPlayer
from server import create_app

HERE = Path(__file__).resolve().parent
CONVERSATIONS = sorted((HERE / "conversations").glob("*.yaml"))
FAILING = sorted((HERE / "conversations" / "failing").glob("*.yaml"))

INBOUND = "the respondent texts first"  # the conversation starts with a text: a link starts none
TEMPLATE = "it expects a WhatsApp template"  # WhatsApp's own message outside its window
REFUSED = "the invitation is refused"  # WhatsApp's window refuses the start; a link has no window
NOT_FOR_THE_WEB = {
    "access_code.yaml": INBOUND,
    "countries_gb_refused.yaml": INBOUND,
    "countries_us_starts.yaml": INBOUND,
    "es_access_code_keywords.yaml": INBOUND,
    "es_synonyms_ambiguous.yaml": INBOUND,
    "example_appointment_en_code.yaml": INBOUND,
    "example_retail_expired.yaml": INBOUND,
    "fr_access_code_system_messages.yaml": INBOUND,
    "not_in_survey_once_a_day.yaml": INBOUND,
    "whatsapp_reminder_template.yaml": TEMPLATE,
    "whatsapp_start_template.yaml": TEMPLATE,
    "whatsapp_start_refused.yaml": REFUSED,
}

KEYWORD = "the web has no keywords"  # STOP, HELP, START and their translations
ENDED = "an end page takes no answer"  # a text after the end gets the not-in-survey reply
CODE = "the web has no access codes"  # the access code texted during the survey repeats the question
REMINDER = "a web session gets no reminders"  # the expects after a wait are a reminder (or an expiry)
EXPIRED = "the text conversation expired in this wait"
REST = "the rest of the file and its result"  # the text conversation went where the web's does not
PHONE = "result field 'Q_RecipientPhoneNumber'"  # a link's respondent has no number in its response
SKIPPED_STEPS = {
    "access_code_while_open.yaml": {"step 2": CODE, "step 6": CODE},
    "attempts_skip_and_end.yaml": {"step 16": ENDED},
    "example_appointment_es.yaml": {"step 2": REMINDER},
    "example_event.yaml": {"step 8": ENDED},
    "example_install_reminder.yaml": {"step 4": REMINDER, "step 6": KEYWORD, "step 12": ENDED},
    "example_support_stop.yaml": {"step 4": KEYWORD, "step 6": KEYWORD, REST: "opted_out"},
    "expiry.yaml": {"step 7": EXPIRED, REST: "expired"},
    "fr_keywords_reminder.yaml": {"step 2": REMINDER, "step 6": KEYWORD, "step 12": KEYWORD, REST: "opted_out"},
    "help.yaml": {"step 2": KEYWORD, "step 6": KEYWORD},
    "quiet_hours_reminder.yaml": {"step 5": REMINDER},
    "readme_example.yaml": {"step 4": EXPIRED, REST: "expired"},
    "remind_once.yaml": {"step 6": REMINDER, "step 11": ENDED},
    "remind_then_expire.yaml": {"step 2": REMINDER, REST: "expired"},
    "start_while_subscribed.yaml": {"step 2": KEYWORD, "step 6": KEYWORD, REST: "opted_out"},
    "stop_and_start.yaml": {"step 4": KEYWORD, REST: "opted_out"},
    "store_detractor.yaml": {PHONE: "keeps the contact's number out"},
    "store_promoter.yaml": {"step 6": ENDED},
}


@pytest.fixture(scope="module")
def web():
    with WebPlayer(create_app) as player:
        yield player


@pytest.mark.parametrize("path", CONVERSATIONS, ids=lambda p: p.name)
def test_conversation_passes_through_the_web_pages(web, path):
    played = web.run(path)
    assert played.failures == []
    if path.name in NOT_FOR_THE_WEB:
        assert played.not_applicable is not None and played.not_applicable.startswith(NOT_FOR_THE_WEB[path.name])
        return
    assert played.not_applicable is None
    skipped = dict(line.split(": ", 1) for line in played.skipped)
    expected = SKIPPED_STEPS.get(path.name, {})
    assert [where.split(" (")[0] for where in skipped] == list(expected)
    for (where, why), wanted in zip(skipped.items(), expected.values(), strict=True):
        assert wanted in why, where


def test_the_lists_name_only_existing_files():
    names = {path.name for path in CONVERSATIONS}
    assert set(NOT_FOR_THE_WEB) <= names and set(SKIPPED_STEPS) <= names


EXPECTED_FAILURES = {  # as over text messages (tests/test_engine_conversation_files.py)
    "left_over_at_end.yaml": ["after the last step"],
    "untaken_message.yaml": ["step 1 (wait, line 4)"],
    "wrong_expect.yaml": ["step 3 (expect, line 7)"],
    "wrong_result.yaml": ["result status (line 8)", "result answer 'recommend' (line 9)"],
}


@pytest.mark.parametrize("path", [p for p in FAILING if p.name in EXPECTED_FAILURES], ids=lambda p: p.name)
def test_negative_conversation_fails_through_the_web_naming_the_step(web, path):
    failures = web.run(path).failures
    assert [f.strip().split(":\n")[0] for f in failures] == EXPECTED_FAILURES[path.name]


def broken_template(find: str, replace: str):
    """create_app whose question page has `find` replaced: a template mistake. A page's
    failure names the step that led to it."""
    source = (TEMPLATES / "question.html").read_text()
    assert find in source

    def make(*args, **kwargs):
        app = create_app(*args, **kwargs)
        env = aiohttp_jinja2.get_env(app)
        env.loader = jinja2.ChoiceLoader([jinja2.DictLoader({"question.html": source.replace(find, replace)}),
                                          env.loader])
        return app

    return make


BROKEN = [
    ("{% for option in page.options %}", "{% for option in page.options[:-1] %}",
     "step 4 (send, line 8)", "the choices"),
    ("{{ option.label }}</label>", "{{ option.code }}</label>", "step 4 (send, line 8)", "the choices"),
    ('<input type="hidden" name="csrf" value="{{ csrf }}">', "", "the invitation", "csrf"),
    ('maxlength="{{ page.max_length }}"', "", "step 2 (send, line 6)", "a text box of at most"),
    ("<legend>{{ page.prompt }}</legend>", "<legend>{{ page.title }}</legend>", "step 1 (expect, line 5)",
     '"Hi Ana! How likely'),
]


@pytest.mark.parametrize(("find", "replace", "where", "expected"), BROKEN, ids=[b[1] or b[0] for b in BROKEN])
def test_a_broken_template_fails_the_test_where_its_page_shows(find, replace, where, expected):
    with WebPlayer(broken_template(find, replace)) as web:
        failures = web.run(HERE / "conversations" / "store_detractor.yaml").failures
    assert failures, "the broken page passed"
    first = failures[0].strip()
    assert first.startswith(where) and expected in first, first


def test_cli_plays_each_file_over_its_own_channel_and_the_web(capsys):
    files = [str(HERE / "conversations" / name) for name in ("store_detractor.yaml", "access_code.yaml")]
    assert main(["test", "--channel", "all", *files]) == 0
    out = capsys.readouterr().out
    assert f"PASS {files[0]}\n" in out and f"PASS {files[0]} [web]\n" in out
    assert f"PASS {files[1]}\n" in out
    assert f"SKIP {files[1]} [web]: not applicable: the respondent texts first" in out
    assert "  skipped result field 'Q_RecipientPhoneNumber'" in out
    assert out.rstrip().endswith("3 passed, 0 failed, 1 not applicable")


def test_cli_web_only_fails_when_a_file_fails_and_shows_the_pages(capsys):
    wrong = str(HERE / "conversations" / "failing" / "wrong_expect.yaml")
    assert main(["test", "--channel", "web", wrong]) == 1
    assert f"FAIL {wrong} [web]" in capsys.readouterr().out
    help_file = str(HERE / "conversations" / "help.yaml")
    assert run_tests([help_file], verbose=True, web=None) == 0
    with WebPlayer(create_app) as web:
        assert run_tests([help_file], verbose=True, web=web, own_channel=False) == 0
    out = capsys.readouterr().out
    assert "  skipped step 2 (send, line 6): 'help' is the help keyword" in out
    assert '    < "' in out and '    > "' in out
