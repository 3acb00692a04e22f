from setuptools import find_packages, setup

setup(
    name="xrobust",
    version="0.1.0",
    description="Adversarial fine-tuning for cross-lingual robustness: X-STILTs on DeepSpeed ZeRO-3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["xrobust", "xrobust.*"]),
    package_data={"xrobust": ["config/presets/*.yaml", "launch/templates/*.sbatch", "launch/templates/*.sh"]},
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
    entry_points={"console_scripts": ["xrobust=xrobust.cli:main"]},
)
