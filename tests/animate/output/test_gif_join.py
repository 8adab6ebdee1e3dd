from PIL import Image

from animate.output.gif_join import GifJoiner
from tests.animate.output.encoding import HEIGHT, WIDTH, decoded_gif, gif_images


def test_joined_gif_keeps_the_colours_of_a_file_with_another_palette(tmp_path):
    def one_colour_gif(colour):
        picture = Image.new("P", (WIDTH, HEIGHT), 0)
        picture.putpalette(list(colour) + [0, 0, 0] * 255)
        path = tmp_path / f"{colour}.gif"
        picture.save(path)
        return path.read_bytes()

    with open(tmp_path / "joined.gif", "wb") as output:
        joiner = GifJoiner(output)
        for colour in [(250, 0, 0), (0, 0, 250), (250, 0, 0)]:
            joiner.add(one_colour_gif(colour))
        joiner.finish()
    pictures, _, _ = decoded_gif(tmp_path / "joined.gif")
    assert [tuple(picture[0, 0]) for picture in pictures] == [(250, 0, 0), (0, 0, 250), (250, 0, 0)]
    # Only the file whose palette differs from the first one's carries a local table.
    assert gif_images((tmp_path / "joined.gif").read_bytes()) == (True, [False, True, False])
