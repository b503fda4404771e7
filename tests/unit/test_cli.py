"""The command line's errors: one line on stderr naming what is wrong (the variable, the
argument, the file and line), a non-zero exit (2 for bad input, 1 for a server that cannot
be reached), and never a traceback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from engine.config import DEMO_CATALOGUE, load_settings
from engine.embedded import EmbeddedStack, StackEndpoints, free_port
from nba.cli import main, parser
from nba.demo import DEMO_CALLERS
from nba.startup import CommandError, CommandStack
from tests.conftest import ROOT


@pytest.fixture(autouse=True)
def _local_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every command keeps its state in the test's folder, with the demo catalogue."""
    for name in list(os.environ):
        if name.startswith("NBA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NBA_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("NBA_MODEL_DIR", str(tmp_path / "models"))


def one_line(text: str) -> str:
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def shown_action(i: int, reward: float = 0.0) -> dict[str, object]:
    return {
        "timestamp": "2026-11-24T10:00:00Z",
        "customer_id": f"c-{i}",
        "channel": "web",
        "placement": "home_hero",
        "features": {"views_1h": i % 4},
        "action_id": "new-laptops",
        "position": 1,
        "propensity": 0.25,
        "reward": reward,
    }


def write_log(path: Path, rows: list[dict[str, object]], bad_line: int | None = None) -> Path:
    lines = [orjson.dumps(row).decode() for row in rows]
    if bad_line is not None:
        lines[bad_line - 1] = '{"timestamp": '
    path.write_text("\n".join(lines) + "\n")
    return path


def bad_catalogue(folder: Path) -> Path:
    folder.mkdir()
    (folder / "offers.yaml").write_text(
        "id: Not_An_Id\nkind: offer\nname: x\nchannels: [web]\n"
        "---\nid: fine-offer\nkind: coupon\nname: y\nchannels: [web]\n"
    )
    return folder


# -- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--duration", "-5"],
        ["demo", "--duration", "0"],
        ["demo", "--duration", "nan"],
        ["demo", "--duration", "inf"],
        ["demo", "--customers", "0"],
        ["demo", "--concurrency", "-1"],
        ["serve", "--port", "0"],
        ["serve", "--port", "70000"],
        ["serve", "--workers", "0"],
        ["seed", "--customers", "-3"],
        ["seed", "--customers", "many"],
        ["email-run", "--customers", "c.txt", "--out", "o.jsonl", "--limit", "0"],
        ["email-run", "--customers", "c.txt", "--out", "o.jsonl", "--limit", "21"],
        ["loadtest", "--rate", "0"],
        ["loadtest", "--rate", "-10"],
        ["loadtest", "--duration", "-1"],
        ["loadtest", "--workers", "0"],
        ["loadtest", "--caller", "desk=nan"],
    ],
)
def test_a_number_out_of_range_is_refused_while_parsing(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(argv)
    assert caught.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"nba {argv[0]}: error: argument {argv[-2]}: expected ")


def test_numbers_in_range_are_taken() -> None:
    args = parser().parse_args(["demo", "--duration", "0.5", "--customers", "1"])
    assert (args.duration, args.customers, args.concurrency) == (0.5, 1, DEMO_CALLERS)
    args = parser().parse_args(["serve", "--port", "65535", "--workers", "2"])
    assert (args.port, args.workers) == (65535, 2)


@pytest.mark.parametrize("option", [["train", "--out"], ["models", "--dir"]])
def test_a_folder_argument_naming_a_file_is_refused(
    option: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    with pytest.raises(SystemExit) as caught:
        parser().parse_args([*option, str(a_file), *(["list"] if option[0] == "models" else [])])
    assert caught.value.code == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "commands"),
    [
        ([], "demo, serve, worker, seed, train, rules, evaluate, email-run, models, report"),
        (["rules"], "check"),
        (["models"], "list, promote, rollback, challenge"),
        (["report"], "uplift"),
    ],
)
def test_a_missing_subcommand_names_the_commands_there_are(
    argv: list[str], commands: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    error = capsys.readouterr().err
    assert "_command" not in error and "required: command" not in error
    assert f"a command is required: one of {commands}" in error


def test_seed_says_what_its_customers_option_is(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["seed", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--customers CUSTOMERS customers in the demo world" in help_text


# -- configuration and start-up ----------------------------------------------------------


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nba.cli", *args],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_data_dir_that_is_a_file_stops_start_up_with_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    done = run_cli("serve", env={**os.environ, "NBA_DATA_DIR": str(a_file)})
    assert done.returncode == 2
    assert one_line(done.stderr).endswith(f"NBA_DATA_DIR: {a_file} is a file, not a folder")
    assert done.stdout == ""


def test_a_host_that_does_not_resolve_names_nba_host_before_anything_starts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NBA_HOST", "no-such-host.invalid")
    assert main(["serve"]) == 2
    out = capsys.readouterr()
    assert one_line(out.err).startswith("nba serve: NBA_HOST: cannot resolve 'no-such-host")
    assert out.out == "" and not (tmp_path / "var").exists()  # no key generated, nothing started


def test_a_port_in_use_names_the_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    assert one_line(capsys.readouterr().err) == (
        f"nba serve: --port: cannot listen on 127.0.0.1:{port} (Address already in use)"
    )


@pytest.mark.parametrize("command", [["serve"], ["train"], ["seed"], ["demo"]])
def test_a_refused_catalogue_lists_its_problems_and_stops_the_command(
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = bad_catalogue(tmp_path / "catalogue")
    monkeypatch.setenv("NBA_CATALOGUE", str(folder))
    monkeypatch.setenv("NBA_PORT", str(free_port()))
    assert main(command) == 2
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    *problems, last = out.err.strip().splitlines()
    assert len(problems) >= 2
    assert all(p.startswith(f"{folder / 'offers.yaml'}:") for p in problems)
    assert {p.split(":")[1] for p in problems} == {"1", "7"}  # each at its line (the id; the kind)
    assert last == (
        f"nba {command[0]}: NBA_CATALOGUE: {len(problems)} problem(s) in {folder}; "
        "catalogue refused"
    )
    assert not (tmp_path / "var" / "embedded").exists()  # refused before any server started


def test_an_external_broker_that_does_not_answer_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NBA_REDIS_URL", "redis://127.0.0.1:1")
    monkeypatch.setenv("NBA_KAFKA_BROKERS", "127.0.0.1:2")
    settings = load_settings()
    stack = EmbeddedStack(
        tmp_path,
        redis_url=settings.redis_url,
        kafka_brokers=settings.kafka_brokers,
        topics=["t.crm"],
        startup_timeout=1.0,
    )
    with pytest.raises(CommandError) as caught, CommandStack(settings, stack):
        pass
    assert str(caught.value) == (
        "NBA_KAFKA_BROKERS: cannot reach Kafka at 127.0.0.1:2 (no broker answered)"
    )
    assert caught.value.code == 1
    assert not [r for r in caplog.records if r.name.startswith("aiokafka")]


@pytest.fixture
def redis_away(
    stack: StackEndpoints, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[str]:
    """A reachable broker, and a Redis URL where nothing listens."""
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    monkeypatch.setenv("NBA_REDIS_URL", url)
    monkeypatch.setenv("NBA_KAFKA_BROKERS", stack.kafka_brokers)
    monkeypatch.setenv("NBA_TOPIC_PREFIX", "cli.")
    yield url


@pytest.mark.integration
def test_seeding_without_redis_names_nba_redis_url_and_hides_the_password(
    redis_away: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["seed", "--customers", "5"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error = err.strip().splitlines()[-1]  # after the progress bar
    address = redis_away.replace(":secret@", ":***@")
    assert error.startswith(f"nba seed: NBA_REDIS_URL: cannot reach Redis at {address} (")
    assert "secret" not in error


# -- files -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("train", "nba train: {log}:11: "),
        ("evaluate", "nba evaluate: {log}:11: "),
    ],
)
def test_a_malformed_log_line_is_one_line_with_file_and_line_and_exit_2(
    command: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "log_bad.jsonl", [shown_action(i) for i in range(20)], bad_line=11)
    assert main([command, "--log", str(log)]) == 2
    assert one_line(capsys.readouterr().err).startswith(expected.format(log=log))


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_a_missing_log_is_one_line_and_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main([command, "--log", str(missing)]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"nba {command}: cannot read {missing}: No such file or directory"
    )


def test_a_log_too_small_to_train_on_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = write_log(tmp_path / "small.jsonl", [shown_action(i, i % 2) for i in range(10)])
    assert main(["train", "--log", str(log)]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"nba train: {log}: need at least 50 rows with both outcomes to train"
    )
    assert not (tmp_path / "models").exists()


def test_a_log_whose_older_rows_hold_one_outcome_is_refused_naming_the_split(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Responses only among the newest fifth (a campaign's first clicks, say): the rows the
    model would learn from hold no click, and the refusal says so."""
    rows = [shown_action(i, float(i >= 90 and i % 2 == 0)) for i in range(100)]
    log = write_log(tmp_path / "late_clicks.jsonl", rows)
    assert main(["train", "--log", str(log)]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"nba train: {log}: need both outcomes in the older 80% of the rows, which the model"
        " learns from (the newest 20% test it)"
    )
    assert not (tmp_path / "models").exists()


def test_a_missing_customer_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.txt"
    out = tmp_path / "out.jsonl"
    argv = ["email-run", "--customers", str(missing), "--out", str(out), "--api-key", "k" * 12]
    assert main(argv) == 2
    assert one_line(capsys.readouterr().err) == (
        f"nba email-run: cannot read {missing}: No such file or directory"
    )
    assert not out.exists()


def test_a_customer_file_with_a_bad_line_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    customers = tmp_path / "customers.txt"
    customers.write_text('c-1\n{"customer_id": "c-2"}\n{"context": {}}\n{not json\n')
    argv = ["email-run", "--customers", str(customers), "--out", str(tmp_path / "o.jsonl")]
    assert main([*argv, "--api-key", "k" * 12]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"nba email-run: {customers}:3: customer_id is missing"
    )


def test_an_api_that_cannot_be_reached_is_one_line_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    customers = tmp_path / "customers.txt"
    customers.write_text("c-1\n")
    url = f"http://127.0.0.1:{free_port()}"
    argv = ["email-run", "--customers", str(customers), "--out", str(tmp_path / "o.jsonl")]
    assert main([*argv, "--url", url, "--api-key", "k" * 12]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert error.startswith(f"nba email-run: cannot reach the API at {url} (")


# -- rules check -------------------------------------------------------------------------


def test_rules_check_of_a_folder_that_does_not_exist_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent"
    assert main(["rules", "check", str(missing)]) == 2
    out = capsys.readouterr()
    assert one_line(out.err) == f"nba rules check: {missing}: no such folder"
    assert out.out == ""


def test_rules_check_of_a_file_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "offers.yaml"
    a_file.write_text("")
    assert main(["rules", "check", str(a_file)]) == 2
    assert one_line(capsys.readouterr().err) == f"nba rules check: {a_file}: not a folder"


def test_rules_check_of_an_empty_folder_says_it_holds_nothing_and_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The engine starts with an empty catalogue, so it is valid; the note says so."""
    assert main(["rules", "check", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert one_line(out.out).startswith(f"{tmp_path}: no actions and no rules (an empty catalogue")


def test_rules_check_of_the_demo_catalogue_counts_what_it_holds(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["rules", "check", str(DEMO_CATALOGUE)]) == 0
    assert " actions, " in one_line(capsys.readouterr().out)


def test_rules_check_of_a_refused_catalogue_lists_every_problem_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = bad_catalogue(tmp_path / "catalogue")
    assert main(["rules", "check", str(folder)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].endswith("problem(s); catalogue refused") and len(lines) >= 3
