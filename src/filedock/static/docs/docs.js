// Render the OpenAPI document with the bundled Swagger UI: nothing is fetched from elsewhere
// (no validator badge, no remote spec).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
  });
});
