# Sourced by the 4B benchmarks against ModelOpt (run_4b_full_length.sh, run_4b_images.sh) with
# root, work and wheels set: installs the ModelOpt wheels into $work/site, builds ModelOpt's
# fake-quant extensions beside the checkpoint (so that no timed run includes the JIT build) and
# writes the random-weight Qwen3-VL-4B to $work/4b unless it is there.
export PYTHONHASHSEED=0 PYTHONUNBUFFERED=1 TQDM_DISABLE=1 TORCH_EXTENSIONS_DIR=$work/torch_extensions
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$work/site" \
  "$wheels"/*.whl > "$work/pip.log" 2>&1 || { tail -n 3 "$work/pip.log"; exit 1; }
export PYTHONPATH=$work/site${PYTHONPATH:+:$PYTHONPATH}
python3 -c "from modelopt.torch.quantization import extensions as e; e.get_cuda_ext(); e.get_cuda_ext_fp8()" \
  > "$work/ext_build.log" 2>&1 &
ext=$!
if [ ! -f "$work/4b/config.json" ]; then
  python3 "$root/benchmarks/modelopt/make_random_qwen3_vl.py" --preset 4b --device cuda \
    --tokenizer "$root/data/qwen3-tokenizer" --out "$work/4b" --seed 0 > "$work/make_4b.log" 2>&1 ||
    { tail -n 3 "$work/make_4b.log"; exit 1; }
fi
wait $ext
