from hipgen_utils.bench import print_table
from hipgen_utils.cli import build_parser


def test_print_table_aligns_columns(capsys):
    text = print_table("title", ["what", "images/s"], [["train demo", 22.031], ["encode", 5.5]])
    lines = text.splitlines()
    assert lines[0] == "title" and lines[1].startswith("what") and set(lines[2]) <= {"-", " "}
    assert lines[3].index("22.03") == lines[4].index("5.5") == lines[1].index("images/s")
    assert capsys.readouterr().out.strip() == text


def test_bench_commands_parse():
    for what in ("data", "vqvae", "prior", "sample"):
        args = build_parser().parse_args(["bench", what, "--quick"])
        assert args.what == what and args.quick


def test_bench_prior_quick_prints_every_variant(capsys, monkeypatch):
    from hipgen_utils import bench, training

    monkeypatch.setattr(training, "cpu_has_bf16", lambda: False)  # bf16 rows are skipped, said so
    monkeypatch.setattr(bench, "_prior_throughput", lambda cfg, k, batch, bf16, nll, steps: 10.0 * batch)
    bench.bench_prior(build_parser().parse_args(["bench", "prior", "--quick"]))
    out = capsys.readouterr().out
    assert out.count("skipped: no native bf16") == 2 and "native bf16: False" in out
    assert "the previous demo setting" in out and "x first row" in out


def test_prior_throughput_runs_both_losses():
    from hipgen_utils import bench
    from hipgen_utils.config import get_profile

    cfg = get_profile("ci").pixelcnn
    for nll in (False, True):
        assert bench._prior_throughput(cfg, 32, batch=2, bf16=False, nll=nll, steps=1) > 0
