from hipgen_utils.bench import print_table
from hipgen_utils.cli import build_parser


def test_print_table_aligns_columns(capsys):
    text = print_table("title", ["what", "images/s"], [["train demo", 22.031], ["encode", 5.5]])
    lines = text.splitlines()
    assert lines[0] == "title" and lines[1].startswith("what") and set(lines[2]) <= {"-", " "}
    assert lines[3].index("22.03") == lines[4].index("5.5") == lines[1].index("images/s")
    assert capsys.readouterr().out.strip() == text


def test_bench_commands_parse():
    for what in ("data", "vqvae", "sample"):
        args = build_parser().parse_args(["bench", what, "--quick"])
        assert args.what == what and args.quick
