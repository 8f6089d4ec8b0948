"""The Accelerate config files in recipes/accelerate/: Accelerate parses each one, each is the kind its
name promises and documents its launch command; cpu.yaml really starts 2 processes."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
from accelerate.commands.launch import launch_command_parser
from accelerate.utils import DistributedType

from conftest import ROOT

CONFIG_DIR = ROOT / "recipes" / "accelerate"
EXPECTED = {
    "cpu": DistributedType.MULTI_GPU,  # the only launcher that starts several local processes (see the file)
    "single_gpu": DistributedType.NO,
    "multi_gpu": DistributedType.MULTI_GPU,
    "fsdp": DistributedType.FSDP,
    "deepspeed_zero2": DistributedType.DEEPSPEED,
    "multi_node": DistributedType.MULTI_GPU,
}
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))


def test_every_config_is_known():
    assert {p.stem for p in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_accelerate_parses_config_and_type_matches_name(path):
    config = load_config_from_file(str(path))  # what `accelerate launch --config_file` uses
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == EXPECTED[path.stem]
    if path.stem == "cpu":
        assert config.use_cpu and config.num_processes == 2 and config.num_machines == 1
    elif path.stem == "single_gpu":
        assert config.num_processes == 1 and not config.use_cpu
    elif path.stem == "multi_node":
        assert config.num_machines == 2 and config.num_processes == 16 and config.main_process_ip
        assert config.main_process_port
    else:
        assert config.num_machines == 1 and config.num_processes > 1 and not config.use_cpu
    if path.stem == "fsdp":
        assert config.fsdp_config["fsdp_version"] == 2
        assert config.fsdp_config["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    if path.stem == "deepspeed_zero2":
        ds = config.deepspeed_config
        assert ds["zero_stage"] == 2 and ds["gradient_clipping"] == 1.0
        assert ds["offload_optimizer_device"] == ds["offload_param_device"] == "none"
        # It would be exported as ACCELERATE_GRADIENT_ACCUMULATION_STEPS and override the recipe's value.
        assert "gradient_accumulation_steps" not in ds


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_nested_keys_are_launch_options(path):
    """`accelerate launch` turns fsdp_config/deepspeed_config entries into its own options and silently
    ignores names it does not know, so a typo would go unnoticed."""
    config = load_config_from_file(str(path))
    options = {action.dest for action in launch_command_parser()._actions}
    for key in {**config.fsdp_config, **config.deepspeed_config}:
        assert key in options, f"{path.name}: `{key}` is not an `accelerate launch` option"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_starts_with_its_launch_command(path):
    lines = path.read_text().splitlines()
    header = []
    for line in lines:
        if not line.startswith("#"):
            break
        header.append(line)
    assert header, f"{path.name} must start with comment lines"
    command = f"accelerate launch --config_file recipes/accelerate/{path.name}"
    assert any(command in line for line in header), f"{path.name}: no `{command}` in its leading comments"


PROBE = """
import torch
from accelerate import Accelerator

# The same call textxfer's trainer makes: CPU when no GPU is visible.
accelerator = Accelerator(cpu=not torch.cuda.is_available())
print(f"PROBE {accelerator.process_index} {accelerator.num_processes} {accelerator.distributed_type.value}", flush=True)
accelerator.wait_for_everyone()
"""


def test_cpu_config_starts_two_processes(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # the CPU path, also on a machine with GPUs
    proc = subprocess.run([str(accelerate), "launch", "--config_file", "recipes/accelerate/cpu.yaml", str(probe)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Both processes write to one pipe through the launcher, so their lines can run together
    # ("PROBE 1 2 MULTI_CPUPROBE 0 2 MULTI_CPU"): find the reports, not the lines.
    reports = sorted(list(m) for m in re.findall(r"PROBE (\d+) (\d+) ([A-Z_]+?)(?=PROBE|\s|$)", proc.stdout))
    assert reports == [["0", "2", "MULTI_CPU"], ["1", "2", "MULTI_CPU"]], proc.stdout + proc.stderr[-2000:]
