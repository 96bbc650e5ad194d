from camcount.stream.livefeed import UpdateBuffer


def test_resume_from_a_sequence_gets_exactly_what_was_missed():
    buf = UpdateBuffer(capacity=100)
    for i in range(10):
        buf.publish("crossing", "cam", {"i": i})
    got = buf.since(6)
    assert [u.seq for u in got.updates] == [7, 8, 9, 10]
    assert not got.gap and got.last_seq == 10
    assert buf.since(10).updates == ()


def test_a_sequence_older_than_the_buffer_is_a_gap():
    buf = UpdateBuffer(capacity=5)
    for i in range(20):
        buf.publish("crossing", "cam", {"i": i})
    got = buf.since(3)
    assert got.gap
    assert [u.seq for u in got.updates] == [16, 17, 18, 19, 20]
    assert not buf.since(15).gap


def test_limit_pages_through():
    buf = UpdateBuffer()
    for _i in range(10):
        buf.publish("x", "cam", {})
    first = buf.since(0, limit=4)
    assert [u.seq for u in first.updates] == [1, 2, 3, 4]
    assert [u.seq for u in buf.since(first.updates[-1].seq, limit=4).updates] == [5, 6, 7, 8]


def test_updates_keep_their_creation_and_publication_stamps_apart_from_data():
    buf = UpdateBuffer()
    buf.publish("crossing", "cam", {"i": 1}, created=1767225600.25, published=1767225600.5)
    buf.publish("window_row", "cam", {"i": 2})
    first, second = buf.since(0).updates
    assert (first.created, first.published, first.data) == (1767225600.25, 1767225600.5, {"i": 1})
    assert (second.created, second.published) == (None, None)
