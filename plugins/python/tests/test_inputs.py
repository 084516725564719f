"""inputs= of oxiida.run, check and submit, and oxiida.__version__."""

import importlib.metadata
import pathlib
import tomllib

import pytest

import oxiida
from test_daemon import daemon, private  # noqa: F401 (a fixture)


def test_inputs_are_variables_bound_before_the_first_statement(capsys):
    out = oxiida.run(
        'print n * 2;\nprint el;\nboth = [el, cfg];\n',
        inputs={"n": 21, "el": "Si", "cfg": {"k": (1, 2.5, None, True)}},
    )
    assert capsys.readouterr().out == "42\nSi\n"
    # Inputs come back among the variables, converted as results are.
    assert out == {"n": 21, "el": "Si", "cfg": {"k": [1, 2.5, None, True]}, "both": ["Si", {"k": [1, 2.5, None, True]}]}


def test_an_input_can_be_rebound_and_passed_to_a_function():
    out = oxiida.run("fn twice(x) { return 2 * x; }\nn = twice(n);\n", inputs={"n": 4})
    assert out == {"n": 8}


def test_a_function_cannot_read_an_input():
    with pytest.raises(oxiida.OxiidaError, match="`n` is an input of the workflow, which a function cannot read"):
        oxiida.run("fn f() { return n; }\nx = f();\n", inputs={"n": 1})


def test_an_unknown_name_is_still_an_error_before_running(capsys):
    with pytest.raises(oxiida.OxiidaError, match="`m` is not defined"):
        oxiida.run('print "ran";\nx = n + m;\n', inputs={"n": 1})
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    "inputs, error, says",
    [
        ({"n": [1, "bad \udc80"]}, oxiida.OxiidaError, "input `n` cannot cross into the workflow: a str that is not valid UTF-8"),
        ({"n": 2**64}, oxiida.OxiidaError, "input `n` cannot cross"),
        ([("n", 1)], TypeError, "inputs must be a mapping of names to values"),
        ({1: 2}, TypeError, "input names must be str"),
        ({"len": 1}, oxiida.OxiidaError, "input `len` has the name of a builtin"),
        ({"if": 1}, oxiida.OxiidaError, "input `if` is not a valid variable name"),
    ],
)
def test_bad_inputs_raise_before_anything_runs(inputs, error, says, capsys):
    with pytest.raises(error, match=says.replace("(", r"\(").replace(")", r"\)")):
        oxiida.run('print "ran";\nprint n;\n', inputs=inputs)
    assert capsys.readouterr().out == ""


def test_an_input_cannot_take_a_required_name():
    def f():
        return 1

    with pytest.raises(oxiida.OxiidaError, match="`f` is an input of the workflow, so a required name cannot use it"):
        oxiida.run("require f;\nx = f();\n", {"f": f}, inputs={"f": 1})


def test_require_of_a_plain_value_says_to_pass_it_as_an_input():
    n = 5
    with pytest.raises(oxiida.OxiidaError) as raised:
        oxiida.run("require n;\nprint n;\n")
    assert 'pass it as an input: `inputs={"n": n}`' in str(raised.value)
    assert n == 5
    assert oxiida.run("x = n + 1;\n", inputs={"n": n})["x"] == 6


def test_check_needs_only_the_names():
    oxiida.check("x = n + m;\n", inputs={"n": object(), "m": lambda: 1})
    with pytest.raises(oxiida.OxiidaError, match="`m` is not defined"):
        oxiida.check("x = n + m;\n", inputs={"n": object()})
    with pytest.raises(oxiida.OxiidaError, match="`n` is not defined"):
        oxiida.check("x = n;\n")


def test_submit_sends_the_inputs_to_the_daemon(private, capsys):  # noqa: F811
    def scale(x):
        return 10 * x

    out = oxiida.submit("require scale;\nprint el;\ny = scale(n);\n", inputs={"n": 4, "el": "Ge"}, wait=True)
    assert out == {"n": 4, "el": "Ge", "y": 40}
    assert capsys.readouterr().out == "Ge\n"
    # Found before sending: an unknown name, and a value that cannot cross.
    with pytest.raises(oxiida.OxiidaError, match="`n` is not defined"):
        oxiida.submit("y = n;\n", wait=True)
    with pytest.raises(oxiida.OxiidaError, match="input `n` cannot cross"):
        oxiida.submit("y = n;\n", inputs={"n": object()}, wait=True)
    with pytest.raises(TypeError, match="inputs must be a mapping"):
        oxiida.submit("y = n;\n", inputs=[("n", 1)], wait=True)


def test_one_version_for_the_package_the_workspace_and_the_daemon(private):  # noqa: F811
    env, _, _ = private
    workspace = pathlib.Path(__file__).resolve().parents[3] / "Cargo.toml"
    version = tomllib.loads(workspace.read_text())["workspace"]["package"]["version"]
    assert oxiida.__version__ == version
    assert importlib.metadata.version("oxiida") == version
    status = daemon(env, "status")
    assert f"version {version}," in status.stdout, status.stdout
