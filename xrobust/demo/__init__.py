"""The embedded demo world (`xrobust demo`, docs/DEMO.md): synthetic languages and tasks, their
tokenizer, a tiny XLM-R encoder pretrained by masked LM, and RS-DA neighbours; nothing downloaded.

A real run never imports this package: the demo reaches the pipeline only as data files on disk,
the `demo` preset and the demo tasks of the registry.
"""
