"""`fastddpm demo` in a real browser: the CLI serves the page on localhost with the tiny model, headless Chromium
picks two objects, clicks Generate and sees the images and the time; a bad label shows its one-line message."""

from __future__ import annotations

import re

import pytest

import demo_page

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(demo_page.missing() is not None, reason=str(demo_page.missing())),
]


@pytest.fixture(scope="module")
def page(tiny_model):
    with demo_page.served(tiny_model) as url, demo_page.browser_page() as page:
        page.goto(url)
        yield page


def test_two_objects_generate_images_and_the_time(page):
    demo_page.clear_objects(page)
    for name in ("yellow cylinder", "blue cube"):
        demo_page.add_object(page, name)
    assert page.locator("#objects .token").all_inner_texts() == ["yellow cylinder", "blue cube"]
    status = demo_page.generate(page)
    assert re.fullmatch(r"4 images in \d+\.\d\d s", status), status
    images = page.locator("#images img")
    assert images.count() == 4
    sizes = [images.nth(i).evaluate("img => [img.naturalWidth, img.naturalHeight]") for i in range(4)]
    assert sizes == [[64, 64]] * 4


def test_a_bad_label_shows_its_message_in_the_page(page):
    demo_page.clear_objects(page)
    demo_page.add_object(page, "red sphre")
    status = demo_page.generate(page)
    assert status.startswith("error: unknown object 'red sphre' in the objects. Did you mean 'red sphere'"), status
    assert page.locator("#images img").count() == 0
