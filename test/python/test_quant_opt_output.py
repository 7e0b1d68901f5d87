"""quant-opt writes -o FILE atomically: a run that fails, is interrupted or is
killed mid-pass leaves no partial or empty FILE, and an existing FILE keeps
its old contents. quant-opt streams into FILE.temp-stream-XXXXXX next to FILE
and renames it over FILE only after every pass has succeeded."""

import pathlib
import signal
import subprocess
import time

import pytest

# GPTQ with self-generated calibration text on the synthetic model: seconds of
# work, so the process is still inside the pass when it is signalled.
LONG_PASS = "--qlr-quantize-linear=method=gptq bits=4 group-size=32 data=generate samples=64 seq-len=128"


@pytest.fixture(scope="module")
def synthetic_model(quant_opt, tmp_path_factory):
    bin_dir = pathlib.Path(quant_opt).parent
    path = tmp_path_factory.mktemp("atomic") / "float.mlirbc"
    subprocess.run([bin_dir / "qlr-import", "--synthetic", "-o", path], check=True, capture_output=True)
    return path


def temp_files(out):
    return sorted(out.parent.glob(out.name + ".temp-stream-*"))


def start_and_signal(quant_opt, model, out, sig):
    """Starts a long quant-opt run writing to `out`, waits until it is inside
    the pass (its temporary output exists), and sends `sig`."""
    process = subprocess.Popen([quant_opt, model, LONG_PASS, "--emit-bytecode", "-o", out],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not temp_files(out):
        assert process.poll() is None, "quant-opt ended before it created its temporary output"
        assert time.monotonic() < deadline, "quant-opt never created its temporary output"
        time.sleep(0.01)
    time.sleep(0.2)  # parsing is done; the pass is running
    if process.poll() is not None:
        pytest.fail("quant-opt finished before it could be signalled: make LONG_PASS longer")
    process.send_signal(sig)
    process.communicate(timeout=60)
    return process.returncode


def test_killed_run_leaves_no_output(quant_opt, synthetic_model, tmp_path):
    out = tmp_path / "out.mlirbc"
    assert start_and_signal(quant_opt, synthetic_model, out, signal.SIGKILL) == -signal.SIGKILL
    assert not out.exists()
    # SIGKILL cannot be caught: the temporary file stays, under its own name.
    assert len(temp_files(out)) == 1


def test_killed_run_keeps_existing_output(quant_opt, synthetic_model, tmp_path):
    out = tmp_path / "out.mlirbc"
    out.write_bytes(b"previous result")
    assert start_and_signal(quant_opt, synthetic_model, out, signal.SIGKILL) == -signal.SIGKILL
    assert out.read_bytes() == b"previous result"


def test_interrupted_run_leaves_nothing(quant_opt, synthetic_model, tmp_path):
    out = tmp_path / "out.mlirbc"
    returncode = start_and_signal(quant_opt, synthetic_model, out, signal.SIGTERM)
    assert returncode != 0
    assert not out.exists()
    # SIGTERM and SIGINT are caught: the temporary file is removed as well.
    assert temp_files(out) == []


def test_failed_run_keeps_existing_output(quant_opt, synthetic_model, tmp_path):
    out = tmp_path / "out.mlirbc"
    out.write_bytes(b"previous result")
    result = subprocess.run([quant_opt, synthetic_model, "--qlr-quantize-linear=method=gptq data=/nonexistent",
                             "-o", out], capture_output=True, text=True)
    assert result.returncode != 0
    assert "cannot read calibration file '/nonexistent'" in result.stderr
    assert out.read_bytes() == b"previous result"
    assert temp_files(out) == []


def test_successful_run_replaces_output(quant_opt, synthetic_model, tmp_path):
    out = tmp_path / "out.mlir"
    out.write_text("previous result")
    result = subprocess.run([quant_opt, synthetic_model, "--mlir-elide-resource-strings-if-larger=16", "-o", out],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "func.func @forward" in out.read_text()
    assert temp_files(out) == []


def test_unwritable_output_is_a_clear_error(quant_opt, synthetic_model, tmp_path):
    out = tmp_path / "missing-directory" / "out.mlirbc"
    result = subprocess.run([quant_opt, synthetic_model, "-o", out], capture_output=True, text=True)
    assert result.returncode == 1
    assert "quant-opt: error: cannot write the output" in result.stderr
    assert "No such file or directory" in result.stderr
