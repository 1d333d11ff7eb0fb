"""`trioweb --personal --install-units`: the systemd user units of an on-demand
personal server, written by a real account into its own home; and the copies
in examples/distrib/systemd, which must be what it writes."""

from __future__ import annotations

import os

import pytest

from tests.support.hosting import hosted
from tests.support.procs import ROOT
from trioweb.cli._units import SERVICE_UNIT, SOCKET_UNIT, unit_texts

EXAMPLES = ROOT / "examples" / "distrib" / "systemd"


def test_the_examples_are_what_install_units_writes_for_opt_trioweb():
    for name, text in unit_texts("/opt/trioweb/.venv/bin/trioweb", None, None).items():
        assert (EXAMPLES / name).read_text() == text


def test_the_service_runs_the_given_tree_and_idle_time_quoted():
    service = unit_texts("/usr/bin/trioweb", "/home/a b/site", 60)[SERVICE_UNIT]
    assert "ExecStart=/usr/bin/trioweb --personal --path '/home/a b/site' --idle-exit 60\n" in service


@pytest.fixture(scope="module")
def hosting(install):
    if os.geteuid() != 0:
        pytest.skip("needs root to create accounts and switch uids")
    with hosted(install, {"hana": ("Hana,,,", "personal")}, (), tag="un") as hosting:
        yield hosting


def test_a_user_installs_the_units_in_her_home(hosting):
    install = hosting.as_user("hana", [hosting.install.trioweb, "--personal", "--install-units", "--idle-exit", "120"])
    assert install.process.wait(60) == 0, install.output()
    units = hosting.home("hana") / ".config" / "systemd" / "user"
    expected = unit_texts(hosting.install.trioweb, None, 120)
    for name in (SOCKET_UNIT, SERVICE_UNIT):
        assert (units / name).read_text() == expected[name]
        assert (units / name).stat().st_uid == hosting.account("hana").pw_uid
    assert f"systemctl --user enable --now {SOCKET_UNIT}" in install.output()
    again = hosting.as_user("hana", [hosting.install.trioweb, "--personal", "--install-units", "--idle-exit", "120"])
    assert again.process.wait(60) == 0, again.output()  # the same contents: harmless


def test_units_she_edited_are_left_alone(hosting):
    units = hosting.home("hana") / ".config" / "systemd" / "user"
    units.mkdir(parents=True, exist_ok=True)
    (units / SERVICE_UNIT).write_text("# mine\n")
    hosting.give_home("hana")
    run = hosting.as_user("hana", [hosting.install.trioweb, "--personal", "--install-units"])
    assert run.process.wait(60) == 2
    assert f"{units / SERVICE_UNIT} exists with other contents" in run.output()
    assert (units / SERVICE_UNIT).read_text() == "# mine\n"
