"""The README is how a newcomer finds their way: keep its promises true."""

from pathlib import Path

from bloodcount.config import setting_docs

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table():
    for variable, _default, _doc in setting_docs():
        assert f"`{variable}`" in README, f"{variable} is missing from README's table"


def test_quick_start_commands_exist_in_the_makefile():
    makefile = (ROOT / "Makefile").read_text()
    for target in ["run", "test", "setup", "lint", "bench"]:
        assert f"\n{target}:" in makefile, target
    assert "make test" in (ROOT / ".ci" / "run").read_text()
