// Loaded between require.js and the ipywidgets HTML manager (embed-amd.js); `make assets` copies
// it into the book's static folder next to them.
//
// Each module bundled in embed-amd.js ("@jupyter-widgets/controls",
// "@jupyter-widgets/html-manager/dist/libembed-amd", ...) derives the URL of its font files
// from its require.js module name. On a CDN those names sit under the CDN's root; offline they
// would resolve against the page's own folder and the fonts would be missing. Map the names to
// the folder this file was served from (_static/ipywidgets/), where `make assets` puts the fonts.
(function () {
  var here = document.currentScript.src.replace(/\/[^/]*$/, "");
  require.config({
    paths: {
      "@jupyter-widgets": here,
      "@jupyter-widgets/html-manager/dist": here,
    },
  });
})();
