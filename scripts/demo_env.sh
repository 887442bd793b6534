# Sourced by `make demo` and scripts/run_demo.sh (the demo only): its output says what happens, without
# progress bars or libraries' deprecation notices from the demo training (tqdm and Hugging Face bars,
# transformers' advice, FutureWarning lines). Tests and production keep them.
export TQDM_DISABLE=1
export HF_HUB_DISABLE_PROGRESS_BARS=1
export TRANSFORMERS_VERBOSITY=error
export TRANSFORMERS_NO_ADVISORY_WARNINGS=1
export TOKENIZERS_PARALLELISM=false
export LOG_LEVEL="${LOG_LEVEL:-WARNING}"  # not the libraries' INFO lines (rouge_score's "Using default tokenizer.")
export PYTHONWARNINGS="${PYTHONWARNINGS:+$PYTHONWARNINGS,}ignore::FutureWarning"
