"""Compile ledger/contracts/StudyLedger.sol with the pinned solcjs from npm.

Usage: ``python -m ledger.compile`` (writes ledger/artifacts/StudyLedger.json)
or ``python -m ledger.compile --check`` (exit 1 if the committed artifact is
stale). The compiler is the ``solc`` npm package pinned in package-lock.json,
run through node; OpenZeppelin is resolved from node_modules via solc's
``--base-path``/``--include-path`` import callback. Settings are pinned here so
the bytecode is reproducible: optimizer on, 10,000 runs (the contract is
called every round; deployment happens once), EVM version ``cancun``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTRACT_NAME = "StudyLedger"
SOURCE_PATH = REPO_ROOT / "ledger" / "contracts" / f"{CONTRACT_NAME}.sol"
ARTIFACT_PATH = REPO_ROOT / "ledger" / "artifacts" / f"{CONTRACT_NAME}.json"
SOURCE_KEY = f"ledger/contracts/{CONTRACT_NAME}.sol"
OPTIMIZER_RUNS = 10_000
EVM_VERSION = "cancun"


# Minimal driver around solc's JS API (the pinned npm package): standard JSON
# in/out through files, imports resolved against the base path, then the
# include paths (node_modules), like solc's --base-path/--include-path.
_NODE_DRIVER = r"""
const [solcPath, inPath, outPath, ...roots] = process.argv.slice(1);
const fs = require('fs'); const path = require('path');
const solc = require(solcPath);
function findImports(p) {
  for (const root of roots) {
    const f = path.join(root, p);
    if (fs.existsSync(f)) return { contents: fs.readFileSync(f, 'utf8') };
  }
  return { error: 'not found: ' + p };
}
const out = solc.compile(fs.readFileSync(inPath, 'utf8'), { import: findImports });
fs.writeFileSync(outPath, out);
"""


class CompileError(RuntimeError):
    """solc failed or is not installed."""


def solcjs_command(repo_root: Path = REPO_ROOT) -> list[str]:
    """The pinned solcjs entry point (node + node_modules/solc/solc.js)."""
    node = shutil.which("node")
    script = repo_root / "node_modules" / "solc" / "solc.js"
    if node is None:
        raise CompileError("node is not on PATH; install Node.js to compile the contract")
    if not script.exists():
        raise CompileError(f"{script} missing; run `npm ci` in {repo_root}")
    return [node, str(script)]


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


#: What the committed artifact holds; the ABI and storage-layout check asks for other outputs.
ARTIFACT_OUTPUTS = ("abi", "evm.bytecode.object", "evm.deployedBytecode.object")


def standard_input(source: str, outputs: Sequence[str] = ARTIFACT_OUTPUTS) -> dict:
    return {
        "language": "Solidity",
        "sources": {SOURCE_KEY: {"content": source}},
        "settings": {
            "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
            "viaIR": True,
            "evmVersion": EVM_VERSION,
            "metadata": {"bytecodeHash": "none"},
            "outputSelection": {"*": {"*": list(outputs)}},
        },
    }


def solc_output(outputs: Sequence[str] = ARTIFACT_OUTPUTS, repo_root: Path = REPO_ROOT) -> dict:
    """solc's standard-JSON output for the contract, ``outputs`` selected (e.g. ``storageLayout``)."""
    cmd = solcjs_command(repo_root)
    source = (repo_root / SOURCE_KEY).read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="fedledger-solc-") as tmp:
        in_path = Path(tmp) / "input.json"
        out_path = Path(tmp) / "output.json"
        in_path.write_text(json.dumps(standard_input(source, outputs)), encoding="utf-8")
        # Run solc's JS API directly and write the output to a file: the solcjs
        # CLI truncates large standard-json output on pipes (node exits
        # before stdout is flushed).
        proc = subprocess.run(
            [
                cmd[0],
                "-e",
                _NODE_DRIVER,
                str(Path(cmd[1]).parent),
                str(in_path),
                str(out_path),
                str(repo_root),
                str(repo_root / "node_modules"),
            ],
            capture_output=True,
            text=True,
            cwd=repo_root,
            timeout=600,
        )
        if proc.returncode != 0 or not out_path.exists():
            raise CompileError(f"solc failed (rc={proc.returncode}): {proc.stderr or proc.stdout}")
        out = out_path.read_text(encoding="utf-8")
    result = json.loads(out)
    errors = [e for e in result.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e["message"]) for e in errors))
    return result["contracts"][SOURCE_KEY][CONTRACT_NAME]


def compile_contract(repo_root: Path = REPO_ROOT) -> dict:
    """Compile and return the artifact dict (does not write it)."""
    cmd = solcjs_command(repo_root)
    source = (repo_root / SOURCE_KEY).read_text(encoding="utf-8")
    version = subprocess.run(
        [*cmd, "--version"], capture_output=True, text=True, check=True, cwd=repo_root
    ).stdout.strip()
    contract = solc_output(ARTIFACT_OUTPUTS, repo_root)
    return {
        "contractName": CONTRACT_NAME,
        "sourcePath": SOURCE_KEY,
        "sourceSha256": source_sha256(source),
        "solcVersion": version,
        "settings": standard_input("")["settings"],
        "abi": contract["abi"],
        "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
        "deployedBytecode": "0x" + contract["evm"]["deployedBytecode"]["object"],
    }


def artifact_json(artifact: dict) -> str:
    return json.dumps(artifact, indent=2, sort_keys=True) + "\n"


def write_artifact(artifact: dict, path: Path = ARTIFACT_PATH) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(artifact_json(artifact), encoding="utf-8")
    return path


def load_artifact(path: Path = ARTIFACT_PATH) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed artifact is stale")
    args = parser.parse_args(argv)
    artifact = compile_contract()
    if args.check:
        if not ARTIFACT_PATH.exists() or ARTIFACT_PATH.read_text(encoding="utf-8") != artifact_json(artifact):
            print(f"{ARTIFACT_PATH} is stale: run python -m ledger.compile", file=sys.stderr)
            return 1
        print(f"{ARTIFACT_PATH} is up to date")
        return 0
    path = write_artifact(artifact)
    print(f"wrote {path} ({artifact['solcVersion']}, {len(artifact['deployedBytecode']) // 2 - 1} bytes runtime)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
