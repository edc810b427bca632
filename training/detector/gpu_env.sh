# Sourced by gpu_budget.sh and gpu_parallel.sh: the Python setup a lent GPU machine needs.
# Keras (and what it needs beyond that machine's image) comes as wheels in $WHEELS, installed
# into /tmp/site; training runs under JAX, from the checkout it is started in.
if [ -n "$WHEELS" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
