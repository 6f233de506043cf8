def test_smoke(world, wait_until):
    world.camera.start()
    world.run()
    conn = world.app.connection()
    hello = conn.wait_type("hello")
    print(hello)
    conn.wait_for(lambda m: m.get("type") == "frame" and m["seq"] >= 3)
    print(conn.messages[:6])
    conn.send({"type": "pause", "id": 5, "max_s": 10})
    conn.wait_type("ack", id=5)
    assert world.camera.Paused
    conn.send({"type": "resume", "id": 6})
    conn.wait_type("ack", id=6)
    assert not world.camera.Paused
    print(world.hook.status())
