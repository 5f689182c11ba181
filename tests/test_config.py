import pytest

from hipgen_utils import config as C


def test_profiles_are_distinct_and_full_keeps_seed_defaults():
    full, demo, ci = (C.get_profile(n) for n in ("full", "demo", "ci"))
    assert (full.vqvae.n_hiddens, full.vqvae.n_residual_hiddens, full.vqvae.n_residual_layers) == (
        128,
        32,
        2,
    )
    assert (full.vqvae.embedding_dim, full.vqvae.n_embeddings, full.vqvae.beta) == (64, 512, 0.25)
    assert (full.vqvae.batch_size, full.vqvae.n_updates, full.vqvae.learning_rate) == (
        32,
        5000,
        3e-4,
    )
    assert full.vqvae.log_interval == 50
    assert ci.vqvae.n_updates < demo.vqvae.n_updates < full.vqvae.n_updates
    # the profiles differ only in sizes, not in the kind of model
    assert full.vqvae.codebook == demo.vqvae.codebook == ci.vqvae.codebook


def test_profile_switch_from_env(monkeypatch):
    monkeypatch.setenv(C.PROFILE_ENV, "ci")
    assert C.get_profile().profile == "ci"
    assert C.get_profile("full").profile == "full"  # an argument wins over the env
    monkeypatch.delenv(C.PROFILE_ENV)
    assert C.get_profile().profile == "demo"


def test_unknown_profile_is_one_line():
    with pytest.raises(C.ConfigError, match="unknown profile 'gpu'.*full, demo, ci"):
        C.get_profile("gpu")


def test_override_coerces_strings_and_rejects_unknown():
    v = C.override(C.VQVAEConfig(), batch_size="8", learning_rate="1e-3", restart_dead="false")
    assert (v.batch_size, v.learning_rate, v.restart_dead) == (8, 1e-3, False)
    with pytest.raises(C.ConfigError, match="unknown setting 'n_hidden'"):
        C.override(C.VQVAEConfig(), n_hidden=3)
    with pytest.raises(C.ConfigError, match="batch_size='eight' is not a valid int"):
        C.override(C.VQVAEConfig(), batch_size="eight")
    d = C.override(C.DataConfig(), data_dir="none")
    assert d.data_dir is None


def test_apply_given_ignores_none():
    v = C.apply_given(C.VQVAEConfig(), batch_size=None, n_updates=7)
    assert (v.batch_size, v.n_updates) == (32, 7)


def test_from_dict_round_trip():
    cfg = C.get_profile("demo")
    again = C.from_dict(C.Config, cfg.to_dict())
    assert again == cfg


def test_run_and_figure_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv(C.RUN_DIR_ENV, str(tmp_path / "r"))
    run = C.run_dir("ci")
    assert run == tmp_path / "r" and run.is_dir()
    # no run writes into the repo's committed figures/ (`make figures` copies them there)
    assert C.figures_dir(run) == run / "figures" and (run / "figures").is_dir()
