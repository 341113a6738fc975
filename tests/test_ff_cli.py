"""The ``cffbench train`` command: one run, accuracies printed; user mistakes are one line, exit 2."""

from __future__ import annotations

import pytest

from cffbench.cli import main


def test_train_with_unknown_variant_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--variant", "cff", "--epochs", "1"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cffbench: error:") and "variant" in err and "\n" not in err


def test_train_with_bad_hidden_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--hidden", "500-abc"])
    assert info.value.code == 2
    assert "--hidden" in capsys.readouterr().err


@pytest.mark.data
def test_train_prints_accuracies_on_real_mnist(capsys, data_root):
    main(["train", "--n-train", "300", "--epochs", "3", "--hidden", "32-32", "--threads", "1",
          "--data-root", str(data_root)])
    out = capsys.readouterr().out
    assert "status: ok" in out and "test " in out and "layer 2:" in out
