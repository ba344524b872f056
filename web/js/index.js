// The start page: links to the pages, in the chosen language.
import * as i18n from "./i18n.js";

await i18n.init();
i18n.bindToggle(document.getElementById("lang-toggle"));
document.body.dataset.screen = "index";
