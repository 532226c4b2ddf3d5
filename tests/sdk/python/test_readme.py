"""The Python client set-up README.md shows (§ Using the official SDKs), run as written against
this server: the ```python block, with the README's host replaced by OUTDIAL_URL's and the
variables `outdial demo --env` would export taken from this suite's account."""

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import _env, api_host

README = Path(__file__).resolve().parents[3] / 'README.md'


def test_the_readme_python_set_up_places_a_call_and_reads_the_balance():
    blocks = re.findall(r'^```python\n(.*?)^```$', README.read_text(), flags=re.S | re.M)
    assert len(blocks) == 1, 'README.md has one ```python block'
    assert "'127.0.0.1:8080'" in blocks[0]
    code = blocks[0].replace("'127.0.0.1:8080'", repr(api_host()))
    env = dict(os.environ, API_KEY=_env('OUTDIAL_API_KEY'), API_SECRET=_env('OUTDIAL_API_SECRET'),
               APPLICATION_ID=_env('OUTDIAL_APPLICATION_ID'), PRIVATE_KEY=_env('OUTDIAL_PRIVATE_KEY'))
    run = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    uuid, balance = run.stdout.split()
    assert re.fullmatch(r'[0-9a-f-]{36}', uuid), run.stdout
    float(balance)
