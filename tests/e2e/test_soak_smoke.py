"""The soak run (bench/soak.py) in miniature, so the script keeps working: a standalone server in
this process, a few rounds of inserts, upserts, deletes, flushes and compaction requests, then the
results checked against the script's reference (count(*), every row's checksum, exact searches)."""

from __future__ import annotations

from bench import soak


def test_soak_smoke_matches_its_reference(capsys):
    args = soak.parse_args(["--rows", "2400", "--batch", "300", "--live", "900", "--flush-every", "2",
                            "--compact-every", "4", "--samples", "8", "--settle", "0", "--no-bound-check"])
    summary = soak.run(args)
    out = capsys.readouterr().out
    v = summary["verify"]
    assert v["problems"] == [] and summary["ok"], out
    assert v["count"] == v["expected_count"] == 900
    assert v["checksum"] == v["expected_checksum"] and v["searches_wrong"] == 0
    assert summary["ops"] == {"inserted": 2400, "upserted": 600, "deleted": 1500, "flushes": 4}
    assert len(summary["series"]["segments"]) >= 2 and max(summary["series"]["segments"]) > 0
    assert "| segments |" in out and "soak: OK" in out
