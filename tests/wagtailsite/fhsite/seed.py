"""Create the content the load asks for: articles with images, a contact form, editors who log in.

python -m fhsite.seed ARTICLES EDITORS   (in the site's directory, DJANGO_SETTINGS_MODULE=fhsite.settings)
"""

import io
import sys

import django


def main(articles: int, editors: int) -> None:
    """Seed the migrated database; idempotent only on an empty site."""
    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.files.images import ImageFile
    from fhsite.models import ArticlePage, FormField, FormPage
    from PIL import Image as PILImage
    from wagtail.images.models import Image
    from wagtail.models import Page

    home = Page.objects.get(depth=2)  # the home page `wagtail start` made
    for n in range(1, articles + 1):
        raw = io.BytesIO()
        PILImage.new("RGB", (240, 160), (n * 37 % 256, n * 91 % 256, n * 53 % 256)).save(raw, "PNG")
        image = Image.objects.create(title=f"Image {n:03d}", file=ImageFile(raw, name=f"image-{n:03d}.png"))
        image.get_rendition("width-120")  # made once here: the load reads renditions, it does not race to make them
        home.add_child(
            instance=ArticlePage(
                title=f"Article {n:03d}",
                slug=f"article-{n:03d}",
                body=f"<p>Body of article {n:03d}.</p>",
                image=image,
            )
        )
    form = home.add_child(instance=FormPage(title="Contact", slug="contact"))
    FormField.objects.create(page=form, label="Message", field_type="singleline", required=True)
    editors_group = Group.objects.get(name="Editors")
    for n in range(1, editors + 1):
        user = User.objects.create_user(f"editor{n:03d}", password="editor-password", first_name=f"Ed{n:03d}x")
        user.groups.add(editors_group)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
