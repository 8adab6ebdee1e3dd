"""A server without weights fails its setup with one sentence naming the directory and the fix."""

from tests.server.live_server import LiveServer, cog_server


def test_missing_weights_fail_setup_with_the_fix(tmp_path):
    missing = tmp_path / "no-weights-here"
    live = LiveServer(tmp_path, weights_dir=missing).start(build_weights=False)
    try:
        try:
            live.wait_until_ready()
        except cog_server.ServerError as error:
            message = str(error)
        else:
            raise AssertionError("setup succeeded without weights")
    finally:
        live.stop()
    assert "SETUP_FAILED" in message
    assert str(missing) in message
    assert "script/download-weights" in message
