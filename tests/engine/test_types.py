"""Faces, the struct-of-arrays value every stage passes on."""
import numpy as np

from engine.types import Faces


def test_largest_keeps_the_face_with_the_biggest_box_and_all_its_rows():
    faces = Faces.from_boxes(np.array([[0, 0, 10, 10], [5, 5, 45, 35], [0, 0, 30, 30]]), np.array([0.9, 0.1, 0.5]))
    largest = faces.largest()
    assert len(largest) == 1
    assert largest.xyxy[0].tolist() == [5, 5, 45, 35] and largest.score[0] == np.float32(0.1)
    assert len(faces) == 3  # the input is left as it was


def test_largest_of_no_faces_is_no_faces():
    assert len(Faces().largest()) == 0
