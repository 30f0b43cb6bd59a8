from llmsim.hwmodels.devices import register_family as _register_family

# the non-GPU cost backends' families (hwmodels/backend.py registers their backends), known before any
# device file naming them is parsed
for _family in ("fpga-engine", "rdu-dataflow"):
    _register_family(_family)
