"""The public API: ``import jaxnet`` exposes every public module, without importing torch."""

import subprocess
import sys


def test_import_jaxnet_exposes_its_modules_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import jaxnet\n"
        "for name in ['nn', 'optim', 'train', 'checkpoint', 'datasets', 'parallel', 'ensemble',"
        " 'autograd', 'tensor', 'from_torch', 'to_torch', 'compare', 'count_parameters']:\n"
        "    assert hasattr(jaxnet, name), name\n"
        "assert sys.modules['torch'] is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
