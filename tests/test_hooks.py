"""The azd hooks with stand-in `az` and `azd` executables on PATH: exit codes and the calls they make.

Error text is the Azure CLI's: `ERROR: (Code) message` then `Code: ...` and `Message: ...` lines
for an ARM error (as in the DeploymentNotFound output quoted in
OfficeDev/microsoft-teams-apps-company-communicator#983), and its own sentences for a signed-out CLI
or an unknown subscription. The hooks match the ARM code, not the layout: azure-cli#28834 shows the
same code printed as a JSON body.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "infra" / "hooks"
SUB = "/subscriptions/sub-1"
FUNCTION_ID = (
    f"{SUB}/resourceGroups/rg-dev/providers/"
    "Microsoft.Web/sites/func-dev/functions/eventgrid_trigger"
)

SIGNED_OUT = "echo \"ERROR: Please run 'az login' to setup account.\" >&2; exit 1"
OTHER_TENANT = (
    "echo \"ERROR: Subscription 'sub-1' not found. Check the spelling and casing and try again.\" >&2; exit 1"
)


def arm_error(code: str, message: str, rc: int = 1) -> str:
    text = f"ERROR: ({code}) {message}\\nCode: {code}\\nMessage: {message}"
    return f'printf "{text}\\n" >&2; exit {rc}'


NOT_FOUND = arm_error(
    "ResourceNotFound",
    "The Resource 'Microsoft.Web/sites/func-dev/functions/eventgrid_trigger' under resource group "
    "'rg-dev' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    3,
)
GROUP_GONE = arm_error("ResourceGroupNotFound", "Resource group 'rg-dev' could not be found.", 3)
DENIED = arm_error(
    "AuthorizationFailed",
    "The client 'x' with object id 'y' does not have authorization to perform action "
    "'Microsoft.Authorization/roleAssignments/delete' over scope 'z' or the scope is invalid.",
)


class Tools:
    """Stand-in `az` and `azd`: each logs its arguments, then runs the first `case` arm that matches."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.bin = tmp_path / "bin"
        self.bin.mkdir(parents=True)
        self.log = tmp_path / "calls.log"
        self.log.touch()
        self.env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "AZURE_ENV_NAME": "dev",
            "AZURE_SUBSCRIPTION_ID": "sub-1",
            "AZURE_LOCATION": "westeurope",
            "WIRE_RETRY_SECONDS": "0",
        }

    def tool(self, name: str, arms: list[tuple[str, str]]) -> None:
        cases = "".join(f"  {glob}) {action} ;;\n" for glob, action in arms)
        script = self.bin / name
        script.write_text(
            f'#!/bin/sh\nprintf "%s %s\\n" "{name}" "$*" >> "{self.log}"\ncase "$*" in\n{cases}esac\nexit 0\n'
        )
        script.chmod(0o755)

    def run(self, hook: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(HOOKS / hook)],
            env=self.env | env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines()

    def counter(self, name: str, until: int, then: str, before: str) -> str:
        """An arm that answers `before` the first until-1 times, then `then`."""
        path = self.dir / f"{name}.count"
        return (
            f'n=$(cat "{path}" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > "{path}"; '
            f'if [ "$n" -ge {until} ]; then {then}; else {before}; fi'
        )


# --- predown: remove-external.sh ----------------------------------------------------------------

WS = f"{SUB}/resourceGroups/rg-sentinel/providers/Microsoft.OperationalInsights/workspaces/ws"
TOPIC = f"{SUB}/resourceGroups/rg-data/providers/Microsoft.EventGrid/systemTopics/evgt-st1"
EXTERNAL = [
    TOPIC,
    f"{TOPIC}/eventSubscriptions/synthetic-blob-created",
    f"{WS}/providers/Microsoft.Authorization/roleAssignments/a1",
    f"{WS}/providers/Microsoft.SecurityInsights/automationRules/r1",
    f"{SUB}/providers/Microsoft.Authorization/roleAssignments/a2",
]


def predown(tmp_path: Path, *arms: tuple[str, str]) -> Tools:
    tools = Tools(tmp_path)
    listing = tmp_path / "ids.txt"
    listing.write_text("\n".join(EXTERNAL) + "\n")
    tools.tool("az", [*arms, ('"deployment sub show "*', f'cat "{listing}"')])
    return tools


def deleted(tools: Tools) -> list[str]:
    return [c.split("--ids ")[1].split()[0] for c in tools.calls() if c.startswith("az resource delete")]


def test_predown_fails_when_az_is_signed_out(tmp_path: Path) -> None:
    tools = predown(tmp_path, ('"account show "*', SIGNED_OUT))
    done = tools.run("remove-external.sh")
    assert done.returncode == 1
    assert "nothing to remove" not in done.stdout
    assert "az login" in done.stderr
    assert tools.calls() == ["az account show --subscription sub-1 --query id --output tsv"]


def test_predown_fails_when_az_points_at_another_tenant(tmp_path: Path) -> None:
    tools = predown(tmp_path, ('"account show "*', OTHER_TENANT))
    done = tools.run("remove-external.sh")
    assert done.returncode == 1
    assert "nothing to remove" not in done.stdout
    assert not deleted(tools)


def test_predown_has_nothing_to_remove_only_when_the_deployment_is_not_found(tmp_path: Path) -> None:
    missing = arm_error("DeploymentNotFound", "Deployment 'dev-external' could not be found.", 3)
    tools = predown(tmp_path, ('"deployment sub show "*', missing))
    done = tools.run("remove-external.sh")
    assert done.returncode == 0, done.stderr
    assert "no deployment dev-external in subscription sub-1; nothing to remove" in done.stdout
    assert not deleted(tools)

    tools = predown(tmp_path / "denied", ('"deployment sub show "*', DENIED))
    done = tools.run("remove-external.sh")
    assert done.returncode == 1
    assert "nothing to remove" not in done.stdout
    assert "AuthorizationFailed" in done.stderr
    assert not deleted(tools)


def test_predown_keeps_the_record_when_a_delete_fails(tmp_path: Path) -> None:
    tools = predown(
        tmp_path,
        (f'"resource delete --ids {EXTERNAL[2]} "*', DENIED),
        (f'"resource delete --ids {EXTERNAL[3]} "*', NOT_FOUND),
    )
    done = tools.run("remove-external.sh")
    assert done.returncode == 1
    # every delete is still tried, so one refusal leaves as little behind as possible
    assert deleted(tools) == [EXTERNAL[1], EXTERNAL[2], EXTERNAL[3], EXTERNAL[4], EXTERNAL[0]]
    assert f"could not delete {EXTERNAL[2]}" in done.stderr
    assert "kept deployment dev-external" in done.stderr
    assert not [c for c in tools.calls() if c.startswith("az deployment sub delete")]

    # run again once the right is granted: the record is still there, so the rest goes
    tools = predown(tmp_path / "again", ('"resource delete "*', NOT_FOUND))
    done = tools.run("remove-external.sh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("was already gone") == len(EXTERNAL)
    record = "az deployment sub delete --subscription sub-1 --name dev-external --output none"
    assert tools.calls()[-1] == record


# --- preprovision: decide-wiring.sh -------------------------------------------------------------


def test_first_provision_is_unwired_without_asking_azure(tmp_path: Path) -> None:
    tools = Tools(tmp_path)
    tools.tool("az", [])
    tools.tool("azd", [])
    done = tools.run("decide-wiring.sh")
    assert done.returncode == 0, done.stderr
    assert tools.calls() == ["azd env set WIRE_TRIGGERS false"]


def test_provision_wires_when_the_function_exists(tmp_path: Path) -> None:
    tools = Tools(tmp_path)
    tools.tool("az", [('"resource show "*', f"echo {FUNCTION_ID}")])
    tools.tool("azd", [])
    done = tools.run("decide-wiring.sh", RESPONDER_EVENTGRID_FUNCTION_ID=FUNCTION_ID)
    assert done.returncode == 0, done.stderr
    assert tools.calls() == [
        f"az resource show --ids {FUNCTION_ID} --query id --output tsv",
        "azd env set WIRE_TRIGGERS true",
    ]


def test_decide_wiring_fails_when_it_cannot_tell(tmp_path: Path) -> None:
    tools = Tools(tmp_path)
    tools.tool("az", [('"resource show "*', SIGNED_OUT)])
    tools.tool("azd", [])
    done = tools.run("decide-wiring.sh", RESPONDER_EVENTGRID_FUNCTION_ID=FUNCTION_ID, WIRE_TRIGGERS="true")
    assert done.returncode == 1
    assert "az login" in done.stderr
    assert not [c for c in tools.calls() if c.startswith("azd")]


def test_second_up_after_down(tmp_path: Path) -> None:
    """`azd down` leaves WIRE_TRIGGERS=true and the outputs in the azd environment. The next `azd up`
    must provision unwired (the function is gone), deploy, then wire once the function exists."""
    tools = Tools(tmp_path)
    deployed = tmp_path / "deployed"
    tools.tool(
        "az",
        [
            (
                '"resource show "*',
                f'if [ -e "{deployed}" ]; then echo {FUNCTION_ID}; else {GROUP_GONE}; fi',
            )
        ],
    )
    # `azd provision` runs the preprovision hook again, as azd does
    tools.tool("azd", [('"provision --no-prompt"', f'sh "{HOOKS / "decide-wiring.sh"}"')])
    remembered = {"RESPONDER_EVENTGRID_FUNCTION_ID": FUNCTION_ID, "WIRE_TRIGGERS": "true"}

    done = tools.run("decide-wiring.sh", **remembered)  # preprovision of the second `azd up`
    assert done.returncode == 0, done.stderr
    assert tools.calls()[-1] == "azd env set WIRE_TRIGGERS false"

    deployed.touch()  # `azd deploy` published the code
    done = tools.run("wire-triggers.sh", **(remembered | {"WIRE_TRIGGERS": "false"}))  # postdeploy
    assert done.returncode == 0, done.stderr
    show = f"az resource show --ids {FUNCTION_ID} --query id --output tsv"
    assert tools.calls() == [
        show,
        "azd env set WIRE_TRIGGERS false",
        show,
        "azd provision --no-prompt",
        show,
        "azd env set WIRE_TRIGGERS true",
    ]


# --- postdeploy: wire-triggers.sh ---------------------------------------------------------------


def test_wire_triggers_waits_for_the_function_then_provisions_once(tmp_path: Path) -> None:
    tools = Tools(tmp_path)
    tools.tool("az", [('"resource show "*', tools.counter("show", 3, f"echo {FUNCTION_ID}", NOT_FOUND))])
    tools.tool("azd", [])
    done = tools.run("wire-triggers.sh", RESPONDER_EVENTGRID_FUNCTION_ID=FUNCTION_ID, WIRE_TRIGGERS="false")
    assert done.returncode == 0, done.stderr
    calls = tools.calls()
    assert [c.split()[1] for c in calls] == ["resource", "resource", "resource", "provision"]
    assert calls[-1] == "azd provision --no-prompt"


def test_wire_triggers_does_nothing_when_this_provision_wired(tmp_path: Path) -> None:
    tools = Tools(tmp_path)
    tools.tool("az", [('"resource show "*', f"echo {FUNCTION_ID}")])
    tools.tool("azd", [])
    done = tools.run("wire-triggers.sh", RESPONDER_EVENTGRID_FUNCTION_ID=FUNCTION_ID, WIRE_TRIGGERS="true")
    assert done.returncode == 0, done.stderr
    assert not [c for c in tools.calls() if c.startswith("azd")]


def test_wire_triggers_fails_when_the_function_never_appears_or_provision_keeps_failing(
    tmp_path: Path,
) -> None:
    tools = Tools(tmp_path)
    tools.tool("az", [('"resource show "*', NOT_FOUND)])
    tools.tool("azd", [])
    done = tools.run("wire-triggers.sh", RESPONDER_EVENTGRID_FUNCTION_ID=FUNCTION_ID, WIRE_WAIT_ATTEMPTS="3")
    assert done.returncode == 1
    assert "still does not exist after 3 checks" in done.stderr
    assert len(tools.calls()) == 3
    assert not [c for c in tools.calls() if c.startswith("azd")]

    tools = Tools(tmp_path / "failing")
    tools.tool("az", [('"resource show "*', f"echo {FUNCTION_ID}")])
    tools.tool("azd", [('"provision "*', "exit 1")])
    done = tools.run("wire-triggers.sh", RESPONDER_EVENTGRID_FUNCTION_ID=FUNCTION_ID)
    assert done.returncode == 1
    assert "provisioning failed 4 times" in done.stderr
    assert len([c for c in tools.calls() if c == "azd provision --no-prompt"]) == 4

    tools = Tools(tmp_path / "denied")
    tools.tool("az", [('"resource show "*', DENIED)])
    tools.tool("azd", [])
    done = tools.run("wire-triggers.sh", RESPONDER_EVENTGRID_FUNCTION_ID=FUNCTION_ID)
    assert done.returncode == 1
    assert len(tools.calls()) == 1
