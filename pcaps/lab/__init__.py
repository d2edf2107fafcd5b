"""The lab: a namespaced plant network, real protocol stacks and a SPAN-port capture."""
