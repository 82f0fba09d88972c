"""Training configs: presets load, values are the thesis's, bad keys and values are named."""
from __future__ import annotations

import pytest

from training.config import Config, ConfigError, config_from_dict, list_presets, load_config

PRESETS = ("utkface_thesis", "utkface_single_gender", "utkface_single_race", "utkface_single_age",
           "utkface_baseline", "utkface_default", "celeba_thesis", "utkface_thesis_avgloss", "utkface_thesis_noef",
           "utkface_thesis_lambda0001", "utkface_thesis_lambda001", "utkface_thesis_lambda1")
RECIPES = ("utkface_thesis_v2", "allages_v1", "allages_v1_ft", "allages_v2", "allages_v3", "allages_v4")  # beyond the thesis: their own optimiser settings and data


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_round_trips_through_the_checkpoint_dict(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert config_from_dict(cfg.to_dict()) == cfg
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.plateau_factor) == (3e-5, 1e-5, 0.1)


def test_presets_are_exactly_the_shipped_files():
    assert set(list_presets()) == set(PRESETS) | set(RECIPES)


def test_ablation_presets_differ_from_the_thesis_preset_in_their_one_setting():
    base = load_config("utkface_thesis").to_dict()
    changed = {"utkface_thesis_avgloss": {("weighting", "kind"): "equal"},
               "utkface_thesis_noef": {("freeze", "early_freeze"): False},
               "utkface_thesis_lambda0001": {("weighting", "lambda"): 0.001},
               "utkface_thesis_lambda001": {("weighting", "lambda"): 0.01},
               "utkface_thesis_lambda1": {("weighting", "lambda"): 1.0}}
    for name, diff in changed.items():
        cfg = load_config(name).to_dict()
        found = {(sec, k): v for sec, block in cfg.items() if isinstance(block, dict)
                 for k, v in block.items() if base[sec][k] != v}
        assert found == diff, name


def test_the_stronger_recipe_fine_tunes_everything_with_its_switches_on():
    cfg = load_config("utkface_thesis_v2")
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.speed.frozen_stages == 0 and not cfg.speed.cache_stem and cfg.speed.bf16 == "auto"
    assert (cfg.model.age_kind, cfg.loss.age, cfg.optim.schedule) == ("expectation", "dldl", "cosine")
    assert cfg.optim.ema > 0 and cfg.augment.shift > 0 and cfg.loss.label_smoothing > 0


def test_thesis_preset_is_the_thesis_setup():
    cfg = load_config("utkface_thesis")
    assert cfg.model.tasks == ("gender", "race", "age") and cfg.model.backbone == "dlib-resnet29"
    assert (cfg.weighting.kind, cfg.weighting.lam) == ("loss_weight_layer", 0.1)
    assert cfg.freeze.early_freeze and cfg.data.protocol == "coral"
    assert cfg.to_dict()["weighting"]["lambda"] == 0.1


def test_single_task_and_baseline_presets_differ_from_the_thesis_where_the_thesis_says():
    for task in ("gender", "race", "age"):
        cfg = load_config(f"utkface_single_{task}")
        assert cfg.model.tasks == (task,) and cfg.weighting.kind == "equal" and not cfg.freeze.early_freeze
    base = load_config("utkface_baseline")
    assert base.model.shared_dims == () and base.model.head_dim == 0
    assert base.speed.frozen_stages == -1 and base.speed.cache_stem
    celeba = load_config("celeba_thesis")
    assert celeba.data.dataset == "celeba" and celeba.data.attributes == ("Male", "Young")


def test_a_path_works_as_well_as_a_preset_name(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('seed = 7\n[model]\nshared_dims = [64, 32]\n')
    cfg = load_config(path)
    assert (cfg.name, cfg.seed, cfg.model.shared_dims) == ("mine", 7, (64, 32))
    assert cfg.optim == Config().optim  # what a file leaves out keeps the default


@pytest.mark.parametrize("text, message", [
    ("[model]\nshared_dim = [64]\n", "unknown key 'model.shared_dim'"),
    ("learning_rate = 0.1\n", "unknown key 'learning_rate'"),
    ("[optimiser]\nlr = 0.1\n", "unknown key 'optimiser'"),
    ("[weighting]\nlam = 0.2\n", "unknown key 'weighting.lam'"),
    ("[optim]\nlr = \"fast\"\n", "'optim.lr': expected float, got 'fast'"),
    ("[optim]\nepochs = 2.5\n", "'optim.epochs': expected int"),
    ("[freeze]\nearly_freeze = 1\n", "'freeze.early_freeze': expected bool"),
    ("[model]\nshared_dims = [\"big\"]\n", "'model.shared_dims': expected tuple"),
    ("[weighting]\nkind = \"gradnorm\"\n", "'weighting.kind' is 'gradnorm', not one of loss_weight_layer"),
    ("model = 3\n", "[model] must be a table"),
    ("[model\n", "not valid TOML"),
])
def test_a_bad_key_or_value_is_a_config_error_naming_it(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value) and "bad.toml" in str(e.value)


def test_an_unknown_key_error_lists_the_known_keys(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[freeze]\npatiense = 3\n")
    with pytest.raises(ConfigError, match=r"known in \[freeze\]: early_freeze, early_stop_patience, patience"):
        load_config(path)


def test_a_missing_preset_names_the_presets_there_are():
    with pytest.raises(ConfigError, match="no such config file or preset .*utkface_thesis"):
        load_config("utkface_thesys")


def test_integers_are_accepted_for_float_fields():
    cfg = config_from_dict({"optim": {"lr": 1}, "weighting": {"lambda": 1}})
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float) and cfg.weighting.lam == 1.0


def test_the_quick_overlay_changes_only_its_own_keys_and_keeps_each_ablation_setting():
    from training.config import list_overlays

    assert "quick" in list_overlays()
    for name in ("utkface_thesis", "utkface_thesis_avgloss", "utkface_thesis_noef", "utkface_thesis_lambda1",
                 "utkface_single_race"):
        full, quick = load_config(name).to_dict(), load_config(name, ["quick"]).to_dict()
        changed = {(sec, k) for sec, block in quick.items() if isinstance(block, dict)
                   for k, v in block.items() if full[sec][k] != v}
        assert changed <= {("optim", "epochs"), ("optim", "precise_bn_batches"), ("weighting", "lr"),
                           ("speed", "frozen_stages"), ("speed", "cache_stem")}, name
        assert quick["name"] == name and quick["weighting"]["lambda"] == full["weighting"]["lambda"]
        assert quick["speed"]["frozen_stages"] == 12 and quick["optim"]["epochs"] == 8


def test_an_overlay_is_put_over_the_preset_and_a_bad_one_is_named(tmp_path):
    over = tmp_path / "mine.toml"
    over.write_text("[optim]\nepochs = 3\n")
    cfg = load_config("utkface_thesis", [over])
    assert cfg.optim.epochs == 3 and cfg.optim.lr == 3e-5  # the preset's other optim keys stay
    with pytest.raises(ConfigError, match="no such overlay .*quick"):
        load_config("utkface_thesis", ["quik"])
    over.write_text("name = 'other'\n")
    with pytest.raises(ConfigError, match="cannot set 'name'"):
        load_config("utkface_thesis", [over])
    over.write_text("[optim]\nepoks = 3\n")
    with pytest.raises(ConfigError, match=r"utkface_thesis.toml \+ mine.toml: unknown key 'optim.epoks'"):
        load_config("utkface_thesis", [over])


def test_every_shipped_overlay_changes_only_what_it_names_and_something_over_a_recipe():
    """The pieces (age_dldl, ema, ...) go over the thesis recipe, the sweep's overlays over the
    stronger one (which already holds the pieces): each must change some key over one of them."""
    import tomllib

    from training.config import OVERLAYS_DIR, list_overlays

    bases = {name: load_config(name).to_dict() for name in ("utkface_thesis", "utkface_thesis_v2")}
    for name in list_overlays():
        named = {(sec, k) for sec, block in tomllib.loads((OVERLAYS_DIR / f"{name}.toml").read_text()).items()
                 for k in block}
        changes = []
        for preset, base in bases.items():
            over = load_config(preset, [name]).to_dict()
            changed = {(sec, k) for sec, block in over.items() if isinstance(block, dict)
                       for k, v in block.items() if base[sec][k] != v}
            assert changed <= named, (name, preset)
            changes.append(changed)
        assert any(changes), name
