"""The built-in attacks as a set: all registered, and the model-poisoning
ones acting in the TFF server stage on malicious rows only."""

import numpy as np


def test_every_attack_is_registered():
    from fedarena.core.plugin.registry import default_registry

    names = set(default_registry().names("attack"))
    assert {"label_flip", "backdoor", "neurotoxin", "edge_case", "sign_flip", "gaussian", "scaling", "alie", "ipm",
            "fang_krum", "fang_trim", "min_max", "min_sum"} <= names


def test_update_attacks_act_in_the_tff_server_stage_on_malicious_rows_only(tff_context):
    from conftest import tiny_scenario
    from fedarena.core.scenario.sweep import check
    from fedarena.core.execution.engine.run import Run
    from fedarena.core.language.parser import parse
    from fedarena.core.plugin.registry import default_registry

    def first_round(attack):
        text = tiny_scenario(rounds=1, attack=f"  attack {attack} {{\n    clients 2\n  }}\n")
        return next(Run(check(parse(text, "t.fls"), default_registry())).rounds()).clients

    one = first_round('sign_flip(variant = "scaled", scale = 1.0)')
    three = first_round('sign_flip(variant = "scaled", scale = 3.0)')
    bad = one["malicious"]
    assert bad.any() and (three["malicious"] == bad).all()
    np.testing.assert_allclose(three["update_norm"][bad], 3 * one["update_norm"][bad], rtol=1e-5)
    np.testing.assert_array_equal(three["update_norm"][~bad], one["update_norm"][~bad])
    fang = first_round("fang_krum")
    np.testing.assert_array_equal(fang["update_norm"][~bad], one["update_norm"][~bad])
    toxin = first_round('neurotoxin(target = 0, knowledge = "omniscient", ratio = 0.5)')
    assert toxin["malicious"][bad].all() and np.isfinite(toxin["update_norm"]).all()
