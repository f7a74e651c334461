"""An article page with an image, and a form page whose answer reads the submission back from the database."""

import os

from django.db import models
from django.http import JsonResponse
from modelcluster.fields import ParentalKey
from wagtail.contrib.forms.models import AbstractForm, AbstractFormField
from wagtail.fields import RichTextField
from wagtail.models import Page


class ArticlePage(Page):
    """A page with a body and an image: one request reads the page, its image and the image's rendition."""

    body = RichTextField(blank=True)
    image = models.ForeignKey("wagtailimages.Image", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def get_context(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        context = super().get_context(request, *args, **kwargs)
        context["pid"] = os.getpid()  # which worker answered
        return context


class FormField(AbstractFormField):
    """A field of the form page."""

    page = ParentalKey("FormPage", on_delete=models.CASCADE, related_name="form_fields")


class FormPage(AbstractForm):
    """Wagtail's form builder: a POST writes a FormSubmission row; the answer is that row as read back."""

    def render_landing_page(self, request, form_submission=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        saved = self.get_submission_class().objects.get(pk=form_submission.pk)
        return JsonResponse({"submission": saved.pk, "data": saved.form_data, "pid": os.getpid()})
