"""InputError messages: one line; library messages name Python arguments, which the CLI shows as
its flags."""

from __future__ import annotations

import pytest

from infoswarm.cli import main
from infoswarm.errors import InputError, as_flags
from infoswarm.hardening import HardenConfig


def test_input_error_is_one_line_problem_then_fix() -> None:
    assert str(InputError("bad\n  thing.", "do  this")) == "bad thing; do this"


def test_as_flags_rewrites_only_the_commands_names() -> None:
    names = {"fi_eps", "download", "method", "pixels"}
    assert as_flags("`fi_eps` must be > 0; pass fi_eps=1e-3", names) == "--fi-eps must be > 0; pass --fi-eps 1e-3"
    assert as_flags("pass download=True", names) == "pass --download"
    assert as_flags("unknown method='magic'; use method=fi", names) == "unknown --method 'magic'; use --method fi"
    assert as_flags("`tau` >= 0; pass tau=0.01", names) == "`tau` >= 0; pass tau=0.01"      # not a flag here
    code = "e.g. MFIPSO(model, pixels=10) or x.pixels=3"
    assert as_flags(code, names) == code


def test_the_library_names_python_arguments_and_the_cli_shows_flags(tmp_path, capsys) -> None:
    with pytest.raises(InputError, match=r"^`pgd_steps` must be positive, got 0; pass 1 or more$"):
        HardenConfig(pgd_steps=0).validate(10)
    with pytest.raises(InputError, match=r"milestones=5 is not an epoch .* raise `epochs`"):
        HardenConfig(epochs=3, milestones=(5,)).validate(10)
    code = main(["harden", "--dataset", "mnist", "--model", "mnist-cnn", "--limit", "20", "--epochs", "3",
                 "--milestones", "5", "--out", str(tmp_path / "h")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == ("error: --milestones 5 is not an epoch inside the 3-epoch schedule; give "
                                 "milestones between 1 and 3, or raise --epochs")
    assert not (tmp_path / "h").exists()
