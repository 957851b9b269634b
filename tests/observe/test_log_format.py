"""JSON log lines: one object per record, tagged with the job, valid whatever bytes a name holds."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aic_worker.observe.log_format import JsonFormatter, enter_job, log_format


def formatted(message: str, *args: object, exc_info: bool = False, **extra: object) -> str:
    info = sys.exc_info() if exc_info else None
    record = logging.getLogger("aic.test").makeRecord(
        "aic.test", logging.INFO, __file__, 1, message, args, info, extra=extra
    )
    return JsonFormatter().format(record)


def test_a_line_carries_the_job_from_the_call_or_from_the_job_context() -> None:
    assert "job_id" not in json.loads(formatted("watching"))
    assert json.loads(formatted("queued %s as job %d", "a.png", 7, job_id=7))["job_id"] == 7
    enter_job(3)
    try:
        line = json.loads(formatted("encoding"))
        assert line["job_id"] == 3 and line["message"] == "encoding" and line["level"] == "INFO"
        assert json.loads(formatted("other", job_id=4))["job_id"] == 4  # the call says best
    finally:
        enter_job(None)
    assert "job_id" not in json.loads(formatted("idle"))


def test_odd_bytes_in_a_name_and_tracebacks_stay_one_valid_ascii_line() -> None:
    name = os.fsdecode(b"/in/caf\xe9-\xff.png")  # not UTF-8: lone surrogates
    try:
        raise OSError("disk on fire")
    except OSError:
        text = formatted("cannot read %s", name, exc_info=True)
    assert text.isascii() and "\n" not in text
    line = json.loads(text)
    assert line["message"] == f"cannot read {name}" and "disk on fire" in line["exception"]


def test_the_format_is_text_or_json_and_nothing_else() -> None:
    assert log_format({}) == "text" and log_format({"AIC_LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ValueError, match="AIC_LOG_FORMAT"):
        log_format({"AIC_LOG_FORMAT": "yaml"})


@pytest.mark.parametrize("variable, value", [("AIC_LOG_FORMAT", "xml"), ("AIC_METRICS_PORT", "nine")])
def test_aic_watch_exits_2_on_a_wrong_setting(tmp_path: Path, variable: str, value: str) -> None:
    env = {**os.environ, variable: value}
    result = subprocess.run(
        [sys.executable, "-m", "aic_watch.main", str(tmp_path), "--ratio", "8", "--archive",
         str(tmp_path / "archive")],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2 and variable in result.stderr
