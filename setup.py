from setuptools import find_packages, setup

setup(
    name="xrobust",
    version="0.1.0",
    description="Adversarial fine-tuning for cross-lingual robustness: X-STILTs on DeepSpeed ZeRO-3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # ds_configs/ and slurm/ are the only copies of those files; a wheel carries them as package data
    # where xrobust/shipped.py looks for them (INSTALLED_AS)
    packages=find_packages(include=["xrobust", "xrobust.*"]) + ["xrobust.ds_configs", "xrobust.launch.templates"],
    package_dir={"xrobust.ds_configs": "ds_configs", "xrobust.launch.templates": "slurm"},
    package_data={"xrobust": ["config/presets/*.yaml", "config/presets/overlays/*.yaml",
                              "config/presets/studies/*.yaml"],
                  "xrobust.ds_configs": ["*.json"], "xrobust.launch.templates": ["*.sbatch", "*.sh"]},
    # torch is installed first by the Makefile (TORCH_SPEC) so CUDA users pick their own build.
    install_requires=[
        "torch>=2.4",
        "deepspeed>=0.19.8",
        "transformers>=5",
        "datasets",
        "wandb",
        "pyyaml",
        "sentencepiece",
        "accelerate",
        "seqeval",
        "tqdm",
        "matplotlib",
        "triton; platform_system == 'Linux' and platform_machine == 'x86_64'",
    ],
    extras_require={"dev": ["pytest", "pytest-timeout"]},
    entry_points={"console_scripts": ["xrobust=xrobust.cli:run"]},
)
