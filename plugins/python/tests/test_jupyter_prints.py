"""In Jupyter, what `=f=` functions print shows in the cell that runs the
workflow, as a plain call's prints do: a real IPython kernel (ipykernel)
runs `oxiida.run`, and the cell's stream messages are read from it."""

import queue

import pytest

from jupyter_client.manager import start_new_kernel

CELL = '''
import sys
import oxiida

def shout(x):
    print(f"shout {x}")
    print(f"grumble {x}", file=sys.stderr)
    return x

oxiida.run('require shout;\\nprint "before";\\na = =shout=(1);\\nprint "after";\\n')
'''


@pytest.fixture
def kernel():
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_process_prints_show_in_the_cell(kernel):
    sent = kernel.execute(CELL)
    streams = {"stdout": "", "stderr": ""}
    while True:
        try:
            message = kernel.get_iopub_msg(timeout=60)
        except queue.Empty:
            pytest.fail(f"the kernel went quiet; the cell printed so far: {streams}")
        if message["parent_header"].get("msg_id") != sent:
            continue
        if message["msg_type"] == "stream":
            streams[message["content"]["name"]] += message["content"]["text"]
        elif message["msg_type"] == "error":
            pytest.fail("\n".join(message["content"]["traceback"]))
        elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            break
    assert streams["stdout"] == "before\nshout 1\nafter\n", streams
    assert streams["stderr"] == "grumble 1\n", streams
