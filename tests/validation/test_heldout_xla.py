"""The held-out OpenXLA GEMM table (validation/data/heldout/xla_gemm): licensed, parsed as written, never
fitted, and priced on the B200 by the generic class (another architecture's coefficients, so flagged)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from llmsim.hwmodels.calibration import default_profile
from llmsim.hwmodels.costmodel import OperatorCostModel
from llmsim.validation import calibrate as cal
from llmsim.validation.loaders import load_measurements

DATA = Path(cal.__file__).parent / "data" / "heldout" / "xla_gemm"


def test_licensed_and_loaded_as_two_devices():
    assert "Apache License" in (DATA / "LICENSE").read_text()
    t = load_measurements(DATA)
    assert len(t) == 375 and set(t["dtype"]) == {"bf16", "fp8"}
    assert set(t.loc[t["device"] == "NVIDIA H100 80GB HBM3", "dtype"]) == {"bf16"}
    assert set(t["device"]) == {"NVIDIA B200", "NVIDIA H100 80GB HBM3"}
    assert np.all(t["measured_s"] > 1e-6) and np.all(t["measured_s"] < 1e-3)
    # nothing of it is in the shipped fit: the calibration reads validation/data/kernels only
    assert not DATA.is_relative_to(cal.SHIPPED_DATA)
    assert int(cal.rows_in_fit(t, default_profile()).sum()) == 0


def test_b200_rows_fall_back_to_another_class_and_the_b200_is_faster_on_one_stack():
    t = load_measurements(DATA)
    priced = OperatorCostModel().price(t)
    b200 = (t["device"] == "NVIDIA B200").to_numpy()
    assert set(priced.fallback[b200]) == {"class"} and set(priced.fallback[~b200]) == {""}
    big = (t["m"] * t["n"] * t["k"] >= 2048.0 ** 3).to_numpy() & (t["dtype"] == "bf16").to_numpy()
    key = ["m", "n", "k"]
    meas_b = t[b200 & big].set_index(key)["measured_s"]
    meas_h = t[~b200 & big].set_index(key)["measured_s"]
    assert np.all((meas_b / meas_h).dropna() < 1.0)


def test_extract_parses_the_text_proto():
    spec = importlib.util.spec_from_file_location("xla_extract", DATA / "extract.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    lines = ["junk", "# proto-message: xla.GemmPerfTable", "entries {", '  key: "sm_90"', "  value {",
             "    entries {", "      b: 1", "      m: 256", "      n: 512", "      k: 1024",
             '      flops { key: "bf16xbf16->bf16" value: 1000000000000 }', "N3xla3gpu12SomethingElseE"]
    rows = mod.parse(lines)
    assert rows.to_dict("records") == [{"arch": "sm_90", "b": 1, "m": 256, "n": 512, "k": 1024,
                                        "dtype": "bf16xbf16->bf16", "flops_per_s": 10 ** 12}]
